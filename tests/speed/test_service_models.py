"""The EC2 model is parsed once per process, however many clients the tasks of one `fab` run create."""

from __future__ import annotations

from infra import session
from labctl import targets

DEAD_ENDPOINT = "http://127.0.0.1:9"  # creating a client sends nothing


def sandbox_ec2(share: bool):
    aws = session.aws_session("ap-northeast-2", sandbox=True)
    if share:
        targets._reuse_service_models(aws)
    return session.client(aws, "ec2", DEAD_ENDPOINT)


def model(client) -> dict:
    return client.meta.service_model._service_description


def test_clients_of_one_process_share_one_parsed_model():
    first, second = sandbox_ec2(share=True), sandbox_ec2(share=True)
    assert first is not second  # fresh clients (per-client hooks still work) ...
    assert model(first) is model(second)  # ... on the one parsed model


def test_without_sharing_each_session_parses_it_again():
    assert model(sandbox_ec2(share=False)) is not model(sandbox_ec2(share=False))
