"""The hourly cost estimate in `fab status` (text and `--json`) and `fab plan`, from `infra.cost`."""

from __future__ import annotations

from infra import cost


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _instance_cost(info: dict, volumes: dict[str, cost.RootVolume], region: str) -> cost.InstanceCost:
    """The cost of one status instance dict; a stopped one gets a public IPv4 address when started again."""
    public_ipv4 = info.get("public_ip") is not None or info["state"] not in cost.RUNNING_STATES
    volume = volumes.get(info.get("image_id") or "", cost.ASSUMED_ROOT)
    return cost.instance_cost(info.get("instance_type") or "", volume, region, public_ipv4)


def instance_json(item: cost.InstanceCost, state: str) -> dict:
    """The `cost` key of one instance in `fab status --json` (see infra/STATUS-JSON.md)."""
    return {
        "now_per_hour": _rounded(item.hourly_in(state)),
        "running_per_hour": _rounded(item.running_hourly),
        "stopped_per_hour": _rounded(item.stopped_hourly),
        "instance_type_per_hour": _rounded(item.instance_hourly),
        "public_ipv4_per_hour": _rounded(item.public_ipv4_hourly),
        "storage_per_hour": _rounded(item.storage_hourly),
        "root_volume": {
            "size_gib": item.volume.size_gib,
            "type": item.volume.volume_type,
            "assumed": item.volume.assumed,
        },
    }


def _totals(pairs: list[tuple[cost.InstanceCost, str]]) -> dict:
    return {
        "instances": len(pairs),
        "now_per_hour": _rounded(cost.add([c.hourly_in(state) for c, state in pairs])),
        "running_per_hour": _rounded(cost.add([c.running_hourly for c, _ in pairs])),
        "stopped_per_hour": _rounded(cost.add([c.stopped_hourly for c, _ in pairs])),
    }


def add_cost(ec2, data: dict) -> dict:
    """Add `cost` to each instance of status_data() (the class's too) and the lab and class totals.

    One DescribeImages call for the root volumes of all the instances' images. The sandbox costs nothing:
    its `cost` is None.
    """
    if data["target"] != "aws":
        data["cost"] = None
        return data
    students = (data.get("class") or {}).get("students") or []
    class_instances = [i for student in students for i in student["instances"]]
    volumes = cost.root_volumes(ec2, [i.get("image_id") for i in data["instances"] + class_instances])
    region = data["region"]
    missing: set[str] = set()

    def priced(infos: list[dict]) -> list[tuple[cost.InstanceCost, str]]:
        pairs = []
        for info in infos:
            item = _instance_cost(info, volumes, region)
            info["cost"] = instance_json(item, info["state"])
            missing.update(cost.unknowns(item, region))
            pairs.append((item, info["state"]))
        return pairs

    prices = cost.load_prices()
    data["cost"] = {
        "prices_date": prices.date,
        "prices_region": prices.region,
        "currency": prices.currency,
        "lab": _totals(priced(data["instances"])),
        "class_total": _totals(priced(class_instances)) if data.get("class") else None,
        "unknown": sorted(missing),
    }
    return data


def _total_text(totals: dict, what: str) -> str:
    return (
        f"about {cost.per_hour(totals['now_per_hour'])} now for {what} "
        f"({cost.per_hour(totals['running_per_hour'])} all running, "
        f"{cost.per_hour(totals['stopped_per_hour'])} all stopped)"
    )


def status_lines(data: dict) -> list[str]:
    """`fab status` lines: the lab's estimate (and the class total), with the price table's date."""
    summary = data.get("cost")
    if not summary:
        return []
    note = f"{summary['prices_date']}, {summary['prices_region']}, {summary['currency']} (infra/prices.json)"
    unknown = f"; no price for {', '.join(summary['unknown'])}" if summary["unknown"] else ""
    lines = []
    if data["instances"]:
        for info in data["instances"]:
            lines.append(f"  cost         {info['id']}: {_instance_text(info)}")
        if len(data["instances"]) > 1:
            lines.append(f"  cost         lab total {_total_text(summary['lab'], 'the lab')}")
    if summary["class_total"]:
        labs = len(data["class"]["students"])
        lines.append(f"  class cost   {_total_text(summary['class_total'], f'{labs} student lab(s)')}")
    if lines:
        lines.append(f"  prices       {note}{unknown}")
    return lines


def _instance_text(info: dict) -> str:
    """`about $0.0206/h now (running: t2.micro $0.0144 + ...), $0.0012/h while stopped (8 GiB gp2)`."""
    c = info["cost"]
    volume = c["root_volume"]
    disk = f"{volume['size_gib']} GiB {volume['type']}" + (" (assumed)" if volume["assumed"] else "")
    parts = [f"{info['instance_type']} {cost.money(c['instance_type_per_hour'])}"]
    if c["public_ipv4_per_hour"]:
        parts.append(f"public IPv4 {cost.money(c['public_ipv4_per_hour'])}")
    parts.append(f"{disk} {cost.money(c['storage_per_hour'])}")
    return (
        f"about {cost.per_hour(c['now_per_hour'])} now ({info['state']}); "
        f"{cost.per_hour(c['running_per_hour'])} while running ({' + '.join(parts)}), "
        f"{cost.per_hour(c['stopped_per_hour'])} while stopped ({disk})"
    )


def plan_line(instance_type: str, image: dict, region: str, count: int = 1) -> str:
    """`fab plan`'s line: what `count` instance(s) of the lab would cost per hour, running and stopped."""
    item = cost.instance_cost(instance_type, cost.root_volume(image), region)
    return f"  cost         {cost.cost_line(item, region, count)}"
