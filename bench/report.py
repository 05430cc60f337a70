"""Medians, ratios against the performance targets (TARGETS), the rich table and the JSON file."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TARGETS = {
    "tracker_over_limit": 0.5,
    "tracker_over_naive": 10.0,
    "p99_ms": 1000.0,
    "bytes_per_customer": 128.0,
    "scrape_ms": 100.0,
}
# Progress lines go to stderr, so that stdout holds only the table.
progress = Console(stderr=True)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of several runs."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    runs = results["runs"]
    limit = spread([r["rate"] for r in runs["limit"]])
    naive = spread([r["rate"] for r in runs["naive"]])
    tracker = spread([r["rate"] for r in runs["tracker"]])
    summary: dict[str, Any] = {"limit": limit, "naive": naive, "tracker": tracker}
    if limit["n"] and tracker["n"]:
        summary["tracker_over_limit"] = tracker["median"] / limit["median"]
    if naive["n"] and tracker["n"]:
        summary["tracker_over_naive"] = tracker["median"] / naive["median"]
    if runs["latency"]:
        summary["latency"] = {
            key: spread([r[key] for r in runs["latency"]])
            for key in ("p50_ms", "p99_ms", "rate_achieved")
        }
    memory = results.get("memory")
    if memory:
        summary["bytes_per_customer"] = memory["info_bytes_per_customer"]
    if results.get("scrape"):
        summary["scrape_ms"] = results["scrape"]["median_ms"]
    return summary


def _rate(s: dict[str, float]) -> str:
    if not s["n"]:
        return "—"
    return f"{s['median']:,.0f}/s  [{s['min']:,.0f}-{s['max']:,.0f}, n={s['n']}]"


def _verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "—"
    ok = value >= target if higher_is_better else value <= target
    return "[green]met[/green]" if ok else "[red]missed[/red]"


def render(results: dict[str, Any], console: Console) -> None:
    s = results["summary"]
    d = results["datasets"]
    table = Table(title=f"retention-tracker benchmark — {results['started']}", show_lines=True)
    table.add_column("figure")
    table.add_column("value (median)")
    table.add_column("target")
    table.add_column("")
    table.add_column("measured on", max_width=60)
    thr = d.get("throughput", {})
    on_topic = (
        f"{thr.get('records', 0):,} records of {thr.get('customers', 0):,} customers "
        f"(90-day mix), {results['options']['partitions']} partitions; one topic copy per run"
    )
    table.add_row("1 limit: raw aiokafka getmany()", _rate(s["limit"]), "", "", on_topic)
    naive_on = (
        f"same topics; timed over {results['options']['naive_events']:,} events "
        f"(or {results['options']['naive_seconds']:.0f} s) after a 2,000-event warm-up"
    )
    table.add_row("2 naive: per-event Faust agent", _rate(s["naive"]), "", "", naive_on)
    table.add_row(
        "3 tracker: retention worker",
        _rate(s["tracker"]),
        "",
        "",
        "same topics, fresh namespace and group per run; first commit → all committed",
    )
    tl, tn = s.get("tracker_over_limit"), s.get("tracker_over_naive")
    table.add_row(
        "  tracker / limit",
        f"{tl:.3f}x" if tl is not None else "—",
        "≥ 0.5x",
        _verdict(tl, TARGETS["tracker_over_limit"], True),
        "",
    )
    table.add_row(
        "  tracker / naive",
        f"{tn:.1f}x" if tn is not None else "—",
        "≥ 10x",
        _verdict(tn, TARGETS["tracker_over_naive"], True),
        "",
    )
    lat = s.get("latency")
    if lat:
        table.add_row(
            "3b produce → state-visible",
            f"p50 {lat['p50_ms']['median']:,.0f} ms, p99 {lat['p99_ms']['median']:,.0f} ms "
            f"[p99 {lat['p99_ms']['min']:,.0f}-{lat['p99_ms']['max']:,.0f}]",
            "p99 ≤ 1 s",
            _verdict(lat["p99_ms"]["median"], TARGETS["p99_ms"], False),
            f"{lat['rate_achieved']['median']:,.0f} ev/s (½ tracker median) for "
            f"{results['options']['latency_seconds']:.0f} s on each run's warm state; "
            "shard o:<partition> polled every 10 ms",
        )
    mem = results.get("memory")
    if mem:
        hist = d.get("history", {})
        on = (
            f"{mem['customers']:,} customers, {hist.get('records', 0):,} records over 90 days "
            f"({hist.get('events_per_customer', 0)} per customer, "
            f"{hist.get('active_days_per_customer', 0)} active days, "
            f"mean span {hist.get('mean_span_days', 0)} d); state written by the real worker"
        )
        b = mem["info_bytes_per_customer"]
        table.add_row(
            "4 Redis bytes / customer (INFO)",
            f"{b:,.0f} B",
            "≤ 128 B",
            _verdict(b, TARGETS["bytes_per_customer"], False),
            on,
        )
        ns = mem["namespace_bytes_per_customer"]
        sample = mem["sample"]
        table.add_row(
            "  Σ MEMORY USAGE / customer",
            f"{ns:,.0f} B (bucket share median {sample['memory_usage_median']:,} B)",
            "",
            "",
            "every key of the namespace, by kind in the JSON; sample of "
            f"{sample['found']:,} customers",
        )
    fill = results.get("fill")
    if fill:
        table.add_row(
            "  tracker filling that history",
            f"{fill['rate']:,.0f}/s",
            "",
            "",
            f"1 run, {fill['records']:,} records, cold state growing to full size",
        )
    scrape = results.get("scrape")
    if scrape:
        table.add_row(
            "5 exporter /metrics",
            f"{scrape['median_ms']:,.0f} ms [{scrape['min_ms']:,.0f}-{scrape['max_ms']:,.0f}]",
            "≤ 100 ms",
            _verdict(scrape["median_ms"], TARGETS["scrape_ms"], False),
            f"{scrape['scrapes']} scrapes after a warm-up, RETENTION_COHORTS_KEPT=90, "
            f"{scrape['daily_cohorts']} daily cohorts, {scrape['samples']:,} samples, "
            f"{scrape['body_bytes'] / 1024:,.0f} KiB",
        )
    console.print(table)
    m = results["machine"]
    where = "private redis-server" if results["options"]["private_redis"] else "stack Redis"
    console.print(
        f"code: git {m['git_commit']}{' + local edits' if m['git_dirty'] else ''} "
        f"(digest {m['code_digest']}), RETENTION_SHARDS={results['options']['shards']}, "
        f"{where}, {m['cpus']} CPUs, load average at start {m['loadavg_at_start']}"
    )
    if results.get("code_changed_during_run"):
        console.print("[red]the tracker's code changed during the run: figures mix versions[/red]")
    _render_memory(results, console)
    _render_cpu(results, console)
    _render_profile(results, console)


def _render_cpu(results: dict[str, Any], console: Console) -> None:
    rows = results["runs"]["tracker"]
    if not rows:
        return
    table = Table(title="CPU cores busy while the tracker catches up (median of runs)")
    names = [k for k in rows[0]["cpu_cores"] if k != "machine"] + ["machine"]
    for n in names:
        table.add_column(n)
    table.add_row(
        *(f"{statistics.median(r['cpu_cores'].get(n, 0) for r in rows):.2f}" for n in names)
    )
    console.print(table)
    wm = [r["worker_metrics"] for r in rows if r["worker_metrics"].get("batch_seconds_sum")]
    ev = [r["redis_eval"] for r in rows]
    if wm:
        redis_share = statistics.median(m["redis_seconds_sum"] / m["batch_seconds_sum"] for m in wm)
        per_batch = statistics.median(m["batch_seconds_sum"] / m["batch_seconds_count"] for m in wm)
        script_us = statistics.median(e["script_usec_per_event"] for e in ev)
        commands = ev[len(ev) // 2].get("commands", {})
        per_event = ", ".join(
            f"{name} {c['per_event']:.1f}" for name, c in list(commands.items())[:6]
        )
        console.print(
            f"worker batches: median {per_batch * 1000:,.0f} ms per batch; "
            f"{redis_share:.0%} of batch time is the Redis apply round trip; "
            f"Lua script time {script_us:.1f} µs/event "
            "(INFO commandstats, all clients)"
        )
        console.print(f"Redis commands per event (incl. inside scripts): {per_event}")


def _render_memory(results: dict[str, Any], console: Console) -> None:
    mem = results.get("memory")
    if not mem:
        return
    kinds = ", ".join(
        f"{kind} {v['per_customer']:,.0f} B" for kind, v in sorted(mem["by_kind"].items())
    )
    sample = mem["sample"]
    enc = sample["encodings"]
    hashtable = enc.get("hashtable", 0) / max(sum(enc.values()), 1)
    groups = ", ".join(
        f"{g} events: {v['median']:,.0f} B (n={v['customers']})"
        for g, v in sample["memory_usage_by_events"].items()
    )
    parts = ", ".join(f"{p} {n:.1f}" for p, n in sample.get("blob_part_bytes_mean", {}).items())
    console.print(f"memory per customer by kind of key: {kinds}")
    console.print(
        f"customer buckets: {sample.get('customers_per_bucket_mean', 0):.0f} customers each, "
        f"{hashtable:.1%} not listpack; a customer's field {sample['key_name_bytes_mean']:.0f} B, "
        f"listpack entry by records per customer: {groups}"
    )
    if parts:
        console.print(f"customer blob, mean bytes by part: {parts}")


def _render_profile(results: dict[str, Any], console: Console) -> None:
    prof = results.get("profile")
    if not prof or not prof.get("main_thread_samples"):
        return
    title = (
        f"worker main thread (py-spy, {prof['main_thread_samples']:,} samples over "
        f"{prof['seconds']} s at {prof['run_rate']:,.0f} events/s; shares of all samples)"
    )
    table = Table(title=title)
    for name, justify in (
        ("by package (self)", "left"),
        ("", "right"),
        ("self time", "left"),
        ("", "right"),
        ("inclusive, project code", "left"),
        ("", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    cols = [prof["by_package"], prof["top_self"], prof["top_inclusive"]]
    for i in range(max(len(c) for c in cols)):
        cells: list[str] = []
        for col in cols:
            name, share = col[i] if i < len(col) else ("", 0.0)
            cells += [name, f"{share:.1%}" if name else ""]
        table.add_row(*cells)
    console.print(table)


def write(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{results['started'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
