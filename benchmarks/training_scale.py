"""Benchmark: the training loop at 20k / 200k / 1M tickets, wall time and peak RSS per step.

Each size runs in its own scratch directory (a copy of `feature_repo/` without data, its own model
registry and pipeline root), so nothing of the checkout's local state is touched. The data size is
set the way a user sets it: the project generator's options under `data:` in a settings file
(`tickets`, `customers`), read by both commands below.

Per size, two processes run one after the other, as a user would run them:
  1. `shipyard --settings S data generate` (the project's generator);
  2. `shipyard --settings S run --no-serve-demo` (Feast apply, then the training pipeline under
     kfp.local: ingest, validate, materialize, training set, split, train, evaluate, register; each
     component is a subprocess of this one).

How it is measured, per step: a sampler thread reads /proc every 0.1 s for the running command and
all its descendants. A process belongs to the kfp.local component whose `--function_to_execute
NAME` is on its own or an ancestor's command line; the `shipyard run` process itself (Feast apply,
orchestration) is the step `run (feast apply + kfp.local)`. Per step: peak RSS = the largest
`VmHWM` (the kernel's own peak-RSS high-water mark of a process, so a spike between two samples
still counts; only a peak in a process's last 0.1 s can be missed); CPU = user + system seconds of
its processes at their last sample (what other load on a shared machine changes least); wall time
= from its first process's start to its last sample. Cross-checks: the kernel's `ru_maxrss` of the
whole command (wait4: the largest single process of the tree) and the largest sum of RSS over the
tree at one sample. A watchdog kills the tree when that sum passes --max-rss-gib (default 10), so
a regression cannot take a shared machine down.

Not a test. Writes benchmarks/results/training_scale.md and .json; `make bench-train` runs it.
Run `.venv/bin/python benchmarks/training_scale.py --sizes 20000,200000` for a shorter curve.
Timings on a shared 2-core machine are noisy: the load average is recorded with every size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GIB = 1024**3
MIB = 1024**2
RUN_STEP = "run (feast apply + kfp.local)"
# The order the pipeline runs its components in (kfp.local runs them one at a time).
PIPELINE_STEPS = (
    "ingest",
    "validate",
    "materialize",
    "training_set",
    "split",
    "train",
    "evaluate",
    "register",
)
GOAL_SECONDS = 300.0
GOAL_RSS_GIB = 8.0


def customers_for(tickets: int) -> int:
    """Customers grow with tickets (20 tickets a customer a year), never below the default 5 000:
    the feature tables (a monthly and a weekly snapshot per customer) grow with the run too."""
    return max(5_000, tickets // 20)


@dataclass
class StepUsage:
    start: float = float("inf")
    end: float = 0.0
    peak_rss: int = 0  # bytes, the largest VmHWM of one process of the step
    peak_sum_rss: int = 0  # bytes, the largest sum of RSS over the step's processes at one sample
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> user + system seconds, last sample

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    """One process as /proc shows it at one moment."""

    pid: int
    ppid: int
    rss: int  # bytes, now
    hwm: int  # bytes, the kernel's peak-RSS high-water mark (VmHWM)
    cpu: float  # user + system seconds so far
    started: float  # seconds since boot


def _read_proc(pid: int) -> ProcSample | None:
    """A process's stat and status, or None when it is gone (or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            status = fh.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    memory = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0]) * 1024
    if "VmRSS" not in memory:
        return None
    return ProcSample(
        pid=pid,
        ppid=int(fields[1]),
        rss=memory["VmRSS"],
        hwm=memory.get("VmHWM", memory["VmRSS"]),
        cpu=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        started=int(fields[19]) / CLOCK_TICKS,
    )


def _tree(root_pid: int) -> dict[int, ProcSample]:
    """The root process and all its descendants now."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            sample = _read_proc(int(entry))
            if sample is not None:
                procs[sample.pid] = sample
    children: dict[int, list[int]] = {}
    for sample in procs.values():
        children.setdefault(sample.ppid, []).append(sample.pid)
    tree, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in procs:
            tree[pid] = procs[pid]
            todo.extend(children.get(pid, []))
    return tree


def _function_of(pid: int) -> str | None:
    """The kfp.local component a process runs (`--function_to_execute NAME` on its command line)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "--function_to_execute" in cmd:
        i = cmd.index("--function_to_execute")
        return cmd[i + 1] if i + 1 < len(cmd) else None
    return None


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("btime"):
                return float(line.split()[1])
    return 0.0


def _meminfo(key: str) -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    return 0


class TreeSampler:
    """Samples a command's process tree: per-step peak RSS, CPU and span, tree total, watchdog."""

    def __init__(self, root_pid: int, root_step: str, limit_bytes: int, interval: float = 0.1) -> None:
        self.root_pid, self.root_step = root_pid, root_step
        self.limit, self.interval = limit_bytes, interval
        self.steps: dict[str, StepUsage] = {}
        self.max_tree_rss = 0
        self.killed: str | None = None
        self._boot = _boot_time()
        self._stop = threading.Event()
        self._step_by_pid: dict[int, str | None] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _step(self, sample: ProcSample, tree: dict[int, ProcSample]) -> str | None:
        """Own or nearest ancestor's component; the root's own step for the root process."""
        if sample.pid == self.root_pid:
            return self.root_step
        if sample.pid not in self._step_by_pid:
            name, pid = None, sample.pid
            while pid in tree and pid != self.root_pid and name is None:
                name = self._step_by_pid.get(pid) or _function_of(pid)
                pid = tree[pid].ppid
            self._step_by_pid[sample.pid] = name
        return self._step_by_pid[sample.pid]

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            tree = _tree(self.root_pid)
            if not tree:
                return
            total = sum(s.rss for s in tree.values())
            per_step: dict[str, int] = {}
            for sample in tree.values():
                step = self._step(sample, tree)
                if step is None:
                    continue
                usage = self.steps.setdefault(step, StepUsage())
                usage.cpu[sample.pid] = sample.cpu
                usage.start = min(usage.start, self._boot + sample.started)
                usage.end = now
                usage.peak_rss = max(usage.peak_rss, sample.hwm, sample.rss)
                per_step[step] = per_step.get(step, 0) + sample.rss
            for step, rss in per_step.items():
                usage = self.steps[step]
                usage.peak_sum_rss = max(usage.peak_sum_rss, rss)
            self.max_tree_rss = max(self.max_tree_rss, total)
            if total > self.limit and self.killed is None:
                self.killed = f"tree RSS {total / GIB:.1f} GiB passed the limit {self.limit / GIB:.1f} GiB"
                for pid in sorted(tree, key=lambda p: tree[p].started, reverse=True):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            self._stop.wait(self.interval)


@dataclass
class CommandResult:
    name: str
    seconds: float
    returncode: int
    ru_maxrss: int  # bytes: the largest single process of the tree, from the kernel
    max_tree_rss: int
    steps: dict[str, StepUsage]
    killed: str | None
    log: str


def run_command(name: str, cmd: list[str], root_step: str, limit: int, log: Path) -> CommandResult:
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(proc.pid, root_step, limit) as sampler:
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return CommandResult(
        name=name,
        seconds=time.perf_counter() - t0,
        returncode=proc.returncode,
        ru_maxrss=usage.ru_maxrss * 1024,
        max_tree_rss=sampler.max_tree_rss,
        steps=sampler.steps,
        killed=sampler.killed,
        log=str(log),
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run_size(tickets: int, work: Path, limit: int) -> dict[str, Any]:
    """One point of the curve, in its own scratch directory."""
    customers = customers_for(tickets)
    shutil.copytree(
        ROOT / "feature_repo", work / "feature_repo", ignore=shutil.ignore_patterns("data", "__pycache__")
    )
    settings = work / "settings.yaml"
    settings.write_text(
        "environment: local\nproject: ticket_routing\n"
        f"feature_repo: {work / 'feature_repo'}\n"
        f"data_dir: {work / 'feature_repo' / 'data'}\n"
        f"state_dir: {work / 'state'}\n"
        f"model_registry: {work / 'models'}\n"
        f"pipeline_root: {work / 'pipeline_root'}\n"
        f"data:\n  tickets: {tickets}\n  customers: {customers}\n"
    )
    shipyard = str(Path(sys.executable).with_name("shipyard"))
    base = [shipyard, "--settings", str(settings)]
    point: dict[str, Any] = {
        "tickets": tickets,
        "customers": customers,
        "load_before": load(),
        "free_gib_before": round(_meminfo("MemAvailable") / GIB, 1),
    }
    print(f"{tickets} tickets, {customers} customers (load {point['load_before']})", flush=True)
    commands = (
        ("data", [*base, "data", "generate"], "data generate"),
        ("run", [*base, "run", "--no-serve-demo"], RUN_STEP),
    )
    results: list[CommandResult] = []
    for name, cmd, root_step in commands:
        result = run_command(name, cmd, root_step, limit, work / f"{name}.log")
        results.append(result)
        print(f"  {name}: {result.seconds:.1f}s, rc {result.returncode}", flush=True)
        if result.returncode != 0 or result.killed:
            tail = Path(result.log).read_text(errors="replace")[-3000:]
            print(f"  {name} failed ({result.killed or 'rc ' + str(result.returncode)}):\n{tail}", flush=True)
            break
    steps: list[dict[str, Any]] = []
    for result in results:
        order = [k for k in ("data generate", RUN_STEP, *PIPELINE_STEPS) if k in result.steps]
        for key in order:
            usage = result.steps[key]
            steps.append(
                {
                    "step": key,
                    "seconds": round(usage.seconds, 1),
                    "cpu_seconds": round(usage.cpu_seconds, 1),
                    "peak_rss_mib": round(usage.peak_rss / MIB),
                    "peak_sum_rss_mib": round(usage.peak_sum_rss / MIB),
                }
            )
    ok = all(r.returncode == 0 and not r.killed for r in results) and len(results) == len(commands)
    total = sum(r.seconds for r in results)
    peak = max((r.ru_maxrss for r in results), default=0)
    point.update(
        {
            "ok": ok,
            "failure": next(
                (r.killed or f"{r.name} rc {r.returncode}" for r in results if r.killed or r.returncode), None
            ),
            "total_seconds": round(total, 1),
            "commands": {r.name: round(r.seconds, 1) for r in results},
            "steps": steps,
            "cpu_seconds": round(sum(st["cpu_seconds"] for st in steps), 1),
            "peak_process_rss_mib": round(peak / MIB),
            "peak_tree_rss_mib": round(max((r.max_tree_rss for r in results), default=0) / MIB),
            "load_after": load(),
            "meets_goal": ok and total <= GOAL_SECONDS and peak < GOAL_RSS_GIB * GIB,
        }
    )
    return point


def markdown(points: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Training at scale: wall time, CPU time and peak RSS per step",
        "",
        f"{meta['cpus']} CPUs, {meta['memory_gib']} GiB RAM, shared with other work; code {meta['commit']}; "
        f"{meta['date']}. Per size: `shipyard data generate`, then `shipyard run --no-serve-demo` "
        "(Feast apply, then the training pipeline under kfp.local, one process per component). "
        "`s` = wall seconds from the step's first process start to its last sample; `cpu` = user + "
        "system seconds of its processes (less sensitive to other load than wall time); `MiB` = the "
        "largest peak RSS (kernel VmHWM) of one process of the step, sampled every 0.1 s from /proc. "
        "The `run` row is the `shipyard run` process itself (Feast apply, orchestration); its wall "
        "time spans the whole pipeline. Load = 1/5/15-minute load average before and after the size.",
        "",
    ]
    sizes = [p["tickets"] for p in points]
    header = "| step | " + " | ".join(f"{n:,} s | cpu | MiB" for n in sizes) + " |"
    lines += [header, "|---|" + "---:|---:|---:|" * len(sizes)]
    names: list[str] = []
    for p in points:
        for s in p["steps"]:
            if s["step"] not in names:
                names.append(s["step"])
    for name in names:
        cells = []
        for p in points:
            s = next((s for s in p["steps"] if s["step"] == name), None)
            if s is None:
                cells += ["-", "-", "-"]
            else:
                cells += [f"{s['seconds']:.1f}", f"{s['cpu_seconds']:.1f}", f"{s['peak_rss_mib']:,}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| **end to end** | "
        + " | ".join(
            f"**{p['total_seconds']:.1f}** | {p['cpu_seconds']:.1f} | **{p['peak_process_rss_mib']:,}**"
            for p in points
        )
        + " |"
    )
    lines += [
        "",
        "| tickets | customers | end to end s | largest process MiB (ru_maxrss) | largest tree sum MiB "
        "| load before | load after | goal (<= 300 s, < 8 GiB) |",
        "|---:|---:|---:|---:|---:|---|---|:---:|",
    ]
    for p in points:
        verdict = "met" if p["meets_goal"] else ("FAILED: " + p["failure"] if p["failure"] else "not met")
        lines.append(
            f"| {p['tickets']:,} | {p['customers']:,} | {p['total_seconds']:.1f} | "
            f"{p['peak_process_rss_mib']:,} | {p['peak_tree_rss_mib']:,} | {p['load_before']} | "
            f"{p['load_after']} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20000,200000,1000000", help="ticket counts, comma-separated")
    parser.add_argument("--max-rss-gib", type=float, default=10.0, help="watchdog: kill the run above this")
    parser.add_argument("--work-root", type=Path, default=None, help="where scratch directories go")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories")
    parser.add_argument("--out", type=Path, default=RESULTS / "training_scale", help="results path stem")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    limit = int(args.max_rss_gib * GIB)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "shipyard", "ticket_routing", "components", "pipelines"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    meta = {
        "cpus": os.cpu_count(),
        "memory_gib": round(_meminfo("MemTotal") / GIB),
        "commit": commit + ("+changes" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "max_rss_gib_watchdog": args.max_rss_gib,
    }
    points = []
    for tickets in sizes:
        available = _meminfo("MemAvailable")
        if available < limit:
            print(
                f"skipping {tickets}: {available / GIB:.1f} GiB available, "
                f"below the {args.max_rss_gib} GiB cap"
            )
            continue
        work = Path(tempfile.mkdtemp(prefix=f"shipyard-scale-{tickets}-", dir=args.work_root))
        try:
            points.append(run_size(tickets, work, limit))
        finally:
            if args.keep:
                print(f"  kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "points": points}, indent=2) + "\n")
    text = markdown(points, meta)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
