"""The EC2 model is parsed once per process, however many sessions and clients one `fab` run makes."""

from __future__ import annotations

import botocore.session

from infra import session

DEAD_ENDPOINT = "http://127.0.0.1:9"  # creating a client sends nothing


def sandbox_ec2():
    return session.client(session.aws_session("ap-northeast-2", sandbox=True), "ec2", DEAD_ENDPOINT)


def model(client) -> dict:
    return client.meta.service_model._service_description


def test_clients_of_one_process_share_one_parsed_model():
    first, second = sandbox_ec2(), sandbox_ec2()
    assert first is not second  # fresh clients (per-client hooks still work) ...
    assert model(first) is model(second)  # ... on the one parsed model


def test_a_plain_botocore_session_parses_it_again():
    """What the shared loader saves: botocore's own sessions each load the model anew."""
    plain = botocore.session.Session().create_client(
        "ec2",
        region_name="ap-northeast-2",
        endpoint_url=DEAD_ENDPOINT,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    assert model(plain) is not model(sandbox_ec2())
