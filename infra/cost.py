"""Hourly cost estimates from a small dated price table (`infra/prices.json`), with no Pricing API call.

While running an instance costs its type's on-demand price, its public IPv4 address and its root EBS volume;
while stopped only the volume (EBS is billed while stopped; an auto-assigned public IPv4 address is released
on stop). A type, volume type or region the table does not list is "price unknown", never a guess.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

PRICES_FILE = Path(__file__).with_name("prices.json")
DEFAULT_ROOT_GIB = 8  # what Canonical's Ubuntu images ask for
DEFAULT_VOLUME_TYPE = "gp2"  # focal's images (hvm-ssd); the costlier of gp2/gp3 when the image is unknown
RUNNING_STATES = ("pending", "running")
STOPPED_STATES = ("stopping", "stopped")


@dataclass(frozen=True)
class PriceTable:
    """The dated prices of one region (USD)."""

    date: str
    region: str
    currency: str
    hours_per_month: float
    instance_hourly: dict[str, float]
    public_ipv4_hourly: float
    ebs_gb_month: dict[str, float]


@functools.lru_cache(maxsize=4)
def load_prices(path: Path = PRICES_FILE) -> PriceTable:
    """The price table shipped with labctl."""
    data = json.loads(Path(path).read_text())
    return PriceTable(
        date=data["date"],
        region=data["region"],
        currency=data["currency"],
        hours_per_month=float(data["hours_per_month"]),
        instance_hourly={k: float(v) for k, v in data["instance_hourly"].items()},
        public_ipv4_hourly=float(data["public_ipv4_hourly"]),
        ebs_gb_month={k: float(v) for k, v in data["ebs_gb_month"].items()},
    )


@dataclass(frozen=True)
class RootVolume:
    """The root EBS volume of an instance; `assumed` when the image did not say (8 GiB gp2)."""

    size_gib: int
    volume_type: str
    assumed: bool = False

    def describe(self) -> str:
        return f"{self.size_gib} GiB {self.volume_type}" + (" (assumed)" if self.assumed else "")


ASSUMED_ROOT = RootVolume(DEFAULT_ROOT_GIB, DEFAULT_VOLUME_TYPE, assumed=True)


def root_volume(image: dict | None) -> RootVolume:
    """The root volume a launch from `image` gets: its block device mapping, else 8 GiB gp2 (assumed)."""
    if not image:
        return ASSUMED_ROOT
    root = image.get("RootDeviceName")
    mappings = [m for m in image.get("BlockDeviceMappings") or [] if m.get("Ebs")]
    chosen = next((m for m in mappings if m.get("DeviceName") == root), mappings[0] if mappings else None)
    ebs = chosen["Ebs"] if chosen else {}
    if not ebs.get("VolumeSize"):
        return ASSUMED_ROOT
    return RootVolume(int(ebs["VolumeSize"]), ebs.get("VolumeType") or DEFAULT_VOLUME_TYPE)


def root_volumes(ec2, image_ids: list[str]) -> dict[str, RootVolume]:
    """Root volume by image id (one DescribeImages call); an image that is gone gets ASSUMED_ROOT."""
    from botocore.exceptions import ClientError

    from infra.errors import error_code

    wanted = sorted({i for i in image_ids if i})
    if not wanted:
        return {}
    try:
        images = ec2.describe_images(ImageIds=wanted)["Images"]
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidAMIID"):
            raise
        if len(wanted) == 1:
            return {wanted[0]: ASSUMED_ROOT}
        found: dict[str, RootVolume] = {}
        for image_id in wanted:  # one deregistered image fails the whole call: ask one by one
            found.update(root_volumes(ec2, [image_id]))
        return found
    by_id = {image["ImageId"]: root_volume(image) for image in images}
    return {image_id: by_id.get(image_id, ASSUMED_ROOT) for image_id in wanted}


@dataclass(frozen=True)
class InstanceCost:
    """What one instance costs per hour (None: not in the price table)."""

    instance_type: str
    volume: RootVolume
    instance_hourly: float | None
    public_ipv4_hourly: float
    storage_hourly: float | None

    @property
    def running_hourly(self) -> float | None:
        if self.instance_hourly is None or self.storage_hourly is None:
            return None
        return self.instance_hourly + self.public_ipv4_hourly + self.storage_hourly

    @property
    def stopped_hourly(self) -> float | None:
        return self.storage_hourly

    def hourly_in(self, state: str) -> float | None:
        """The price per hour in `state`: running (and pending), stopped (and stopping), else nothing."""
        if state in RUNNING_STATES:
            return self.running_hourly
        if state in STOPPED_STATES:
            return self.stopped_hourly
        return 0.0  # shutting-down / terminated: the volume goes with the instance


def instance_cost(
    instance_type: str,
    volume: RootVolume,
    region: str,
    public_ipv4: bool = True,
    prices: PriceTable | None = None,
) -> InstanceCost:
    """The hourly prices of one instance of `instance_type` with `volume` in `region`."""
    prices = prices or load_prices()
    if region != prices.region:
        return InstanceCost(instance_type, volume, None, 0.0, None)
    gb_month = prices.ebs_gb_month.get(volume.volume_type)
    storage = None if gb_month is None else volume.size_gib * gb_month / prices.hours_per_month
    return InstanceCost(
        instance_type,
        volume,
        prices.instance_hourly.get(instance_type),
        prices.public_ipv4_hourly if public_ipv4 else 0.0,
        storage,
    )


def unknowns(cost: InstanceCost, region: str, prices: PriceTable | None = None) -> list[str]:
    """What the table has no price for, e.g. `instance type m7i.large` (empty when everything is known)."""
    prices = prices or load_prices()
    if region != prices.region:
        return [f"region {region}"]
    missing = [] if cost.instance_hourly is not None else [f"instance type {cost.instance_type}"]
    return missing + ([] if cost.storage_hourly is not None else [f"volume type {cost.volume.volume_type}"])


def add(values: list[float | None]) -> float | None:
    """The sum, or None when any part is unknown."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def money(value: float | None) -> str:
    return "price unknown" if value is None else f"${value:.4f}"


def per_hour(value: float | None) -> str:
    return "price unknown" if value is None else f"{money(value)}/h"


def running_parts(cost: InstanceCost) -> str:
    """`t2.micro $0.0144 + public IPv4 $0.0050 + 8 GiB gp2 $0.0012`."""
    parts = [f"{cost.instance_type} {money(cost.instance_hourly)}"]
    if cost.public_ipv4_hourly:
        parts.append(f"public IPv4 {money(cost.public_ipv4_hourly)}")
    parts.append(f"{cost.volume.describe()} {money(cost.storage_hourly)}")
    return " + ".join(parts)


def prices_note(prices: PriceTable | None = None) -> str:
    prices = prices or load_prices()
    return f"prices of {prices.date}, {prices.region}"


def cost_line(cost: InstanceCost, region: str, count: int = 1, prices: PriceTable | None = None) -> str:
    """One lab's estimate, e.g. `about $0.0206/h while running (t2.micro $0.0144 + public IPv4 $0.0050 +
    8 GiB gp2 $0.0012), $0.0012/h while stopped (8 GiB gp2); prices of 2026-12-01, ap-northeast-2`."""
    prices = prices or load_prices()
    if region != prices.region:
        return f"price unknown: the price table covers {prices.region} only ({prices_note(prices)})"
    labs, each = (f" for {count} labs", "each ") if count > 1 else ("", "")
    running = add([cost.running_hourly] * count)
    stopped = add([cost.stopped_hourly] * count)
    text = (
        f"about {per_hour(running)}{labs} while running ({each}{running_parts(cost)}), "
        f"{per_hour(stopped)} while stopped ({each}{cost.volume.describe()})"
    )
    missing = unknowns(cost, region, prices)
    if missing:
        text += f"; no price for {', '.join(missing)}"
    return f"{text}; {prices_note(prices)}"
