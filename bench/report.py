#!/usr/bin/env python3
"""Reads what bench/run.sh left in its results folder and prints the comparison table.

  report.py RESULTS_DIR

Files it reads (each optional; a missing one makes its row "not run"):
  wrk-ceiling-get-rN.txt wrk-gpuq-get-rN.txt wrk-gpuq-post-rN.txt wrk-baseline-get-rN.txt
  wrk-baseline-post-rN.txt  (wrk --latency output of round N = 1, 2, ...; a row shows the
  median of its rounds for req/s, p50 and p99 each, and the errors of all of them; a file
  without -rN counts as one round)
  queue.json (gpuq_bench_submit_drain's line), rss-idle.kb, rss-after.kb, durability.txt,
  notes.txt (one line per thing that was skipped, printed under the table)
Exit status: 0 when every gpuq target that was measured passed, 1 otherwise.
"""
import glob
import json
import os
import re
import sys

# The targets.
GET_VS_CEILING = 0.75
GET_VS_BASELINE = 5.0
POST_VS_BASELINE = 4.0
P99_MS = 8.0
QUEUE_TASKS_PER_S = 6500.0
IDLE_RSS_MB = 20.0

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_duration_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * UNITS_MS[m.group(2)] if m else None


def parse_wrk(path):
    """wrk --latency output -> {rps, p50, p99 (ms), non2xx, socket_errors, requests}."""
    if not os.path.exists(path):
        return None
    text = open(path).read()
    out = {"rps": None, "p50": None, "p99": None, "non2xx": 0, "socket_errors": 0,
           "requests": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+(\S+)" % pct, text, re.M)
        if m:
            out[key] = parse_duration_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors:\s+connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(g) for g in m.groups())
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    if out["rps"] is None:
        return {"broken": text.strip().splitlines()[-1] if text.strip() else "no wrk output"}
    return out


def median(values):
    """The middle value; the lower of the two middle ones for an even count (the cautious one
    for req/s)."""
    values = sorted(values)
    return values[(len(values) - 1) // 2]


def parse_rounds(d, name):
    """Every round of one wrk row, merged: medians, summed errors, `rounds` = each round's
    req/s in order. None when there is none; the first broken round when one is."""
    def round_of(path):
        m = re.search(r"-r(\d+)\.txt$", path)
        return int(m.group(1)) if m else 0
    paths = sorted(glob.glob(os.path.join(d, f"wrk-{name}-r*.txt")), key=round_of)
    paths = paths or [p for p in [os.path.join(d, f"wrk-{name}.txt")] if os.path.exists(p)]
    samples = [parse_wrk(p) for p in paths]
    if not samples:
        return None
    for sample in samples:
        if "broken" in sample:
            return sample
    out = {"rounds": [sample["rps"] for sample in samples]}
    for key in ("rps", "p50", "p99"):
        have = [sample[key] for sample in samples if sample[key] is not None]
        out[key] = median(have) if have else None
    for key in ("non2xx", "socket_errors"):
        out[key] = sum(sample[key] for sample in samples)
    return out


def read(path):
    return open(path).read().strip() if os.path.exists(path) else None


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    return "-" if v is None else f"{v:.2f} ms"


def fmt_ratio(v, percent=False):
    if v is None:
        return "-"
    return f"{v * 100:.0f}%" if percent else f"{v:.1f}x"


def main():
    d = sys.argv[1]
    w = {name: parse_rounds(d, name)
         for name in ("ceiling-get", "gpuq-get", "gpuq-post", "baseline-get", "baseline-post")}
    rows = []  # (name, rate, p50, p99, errors, vs ceiling, vs baseline, target, result)
    failed = False

    def rps(name):
        r = w[name]
        return r["rps"] if r and "broken" not in r else None

    def errors(r):
        return r["non2xx"] + r["socket_errors"]

    def wrk_row(label, name, ceiling=None, baseline=None, checks=(), target="reference"):
        nonlocal failed
        r = w[name]
        if r is None:
            rows.append((label, "not run", "", "", "", "", "", target, "-"))
            return
        if "broken" in r:
            rows.append((label, "broken", "", "", "", "", "", target, "FAIL"))
            failed = failed or bool(checks)
            return
        vs_c = r["rps"] / ceiling if ceiling else None
        vs_b = r["rps"] / baseline if baseline else None
        result = "-"
        if checks:
            ok = errors(r) == 0 and r["p99"] is not None and r["p99"] <= P99_MS
            for need, have in checks:
                if have is not None:
                    ok = ok and have >= need
            result = "PASS" if ok else "FAIL"
            failed = failed or not ok
        err = f"{r['non2xx']}/{r['socket_errors']}"
        rows.append((label, fmt_rate(r["rps"]), fmt_ms(r["p50"]), fmt_ms(r["p99"]), err,
                     fmt_ratio(vs_c, percent=True), fmt_ratio(vs_b), target, result))

    ceiling = rps("ceiling-get")
    base_get, base_post = rps("baseline-get"), rps("baseline-post")
    wrk_row("ceiling GET (Beast static)", "ceiling-get")
    get_rps, post_rps = rps("gpuq-get"), rps("gpuq-post")
    wrk_row("gpuq GET /task_status", "gpuq-get", ceiling, base_get,
            checks=((GET_VS_CEILING, get_rps / ceiling if get_rps and ceiling else None),
                    (GET_VS_BASELINE, get_rps / base_get if get_rps and base_get else None)),
            target=">=75% ceil, >=5x base, p99<=8ms")
    wrk_row("gpuq POST /submit_task", "gpuq-post", ceiling, base_post,
            checks=((POST_VS_BASELINE, post_rps / base_post if post_rps and base_post else None),),
            target=">=4x base, p99<=8ms")
    wrk_row("baseline GET (FastAPI+Redis)", "baseline-get", ceiling)
    wrk_row("baseline POST (FastAPI+Redis)", "baseline-post", ceiling)

    q = read(os.path.join(d, "queue.json"))
    target = f">={QUEUE_TASKS_PER_S:,.0f} tasks/s, all done once"
    if q is None:
        rows.append(("queue (a): submit+drain", "not run", "", "", "", "", "", target, "-"))
    else:
        try:
            j = json.loads(q.splitlines()[-1])
            ok = bool(j.get("ok")) and j["tasks_per_s"] >= QUEUE_TASKS_PER_S
            detail = f"{j['completed']}/{j['submitted']} done"
            bad = j["submitted"] - j["completed"] + j.get("retried", 0) + j.get("wrong_payload", 0)
            rows.append(("queue (a): submit+drain", f"{j['tasks_per_s']:,.0f}/s",
                         f"{j['seconds']:.2f} s", detail, str(bad), "", "", target,
                         "PASS" if ok else "FAIL"))
        except (ValueError, KeyError, IndexError):
            ok = False
            rows.append(("queue (a): submit+drain", "broken", "", "", "", "", "", target, "FAIL"))
        failed = failed or not ok

    idle, after = read(os.path.join(d, "rss-idle.kb")), read(os.path.join(d, "rss-after.kb"))
    if idle:
        mb = int(idle) / 1024
        ok = mb <= IDLE_RSS_MB
        failed = failed or not ok
        rows.append(("gpuq RSS idle", f"{mb:.1f} MB", "", "", "", "", "", "<=20 MB",
                     "PASS" if ok else "FAIL"))
    else:
        rows.append(("gpuq RSS idle", "not run", "", "", "", "", "", "<=20 MB", "-"))
    rows.append(("gpuq RSS after (b)", f"{int(after) / 1024:.1f} MB" if after else "not run",
                 "", "", "", "", "", "report", "-"))

    dur = read(os.path.join(d, "durability.txt"))
    m = re.search(r"durable: (\d+)/(\d+)", dur or "")
    if m:
        ok = m.group(1) == m.group(2) and int(m.group(2)) > 0
        failed = failed or not ok
        rows.append(("durability (kill -9)", f"{m.group(1)}/{m.group(2)}", "", "", "", "", "",
                     "every 200 survives", "PASS" if ok else "FAIL"))
    else:
        rows.append(("durability (kill -9)", "not run" if dur is None else "broken", "", "", "",
                     "", "", "every 200 survives", "-" if dur is None else "FAIL"))
        failed = failed or dur is not None

    header = ("", "req/s", "p50", "p99", "non2xx/sock", "vs ceiling", "vs baseline", "target",
              "result")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip()
    print(line(header))
    print("  ".join("-" * wd for wd in widths))
    for r in rows:
        print(line(r))
    labels = {"ceiling-get": "ceiling GET", "gpuq-get": "gpuq GET", "gpuq-post": "gpuq POST",
              "baseline-get": "baseline GET", "baseline-post": "baseline POST"}
    rounds = [(labels[name], r["rounds"]) for name, r in w.items()
              if r and "rounds" in r and len(r["rounds"]) > 1]
    if rounds:
        print()
        print(f"req/s of each round (the table shows the median of {len(rounds[0][1])}):")
        for label, values in rounds:
            print(f"  {label:<14} " + " / ".join(fmt_rate(v) for v in values))
    notes = read(os.path.join(d, "notes.txt"))
    if notes:
        print()
        print(notes)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
