"""Merge the outputs of benches/run.sh into benches/results/summary-<device>.json and
summary-<device>.md (Tessera vs Cycles: samples/s, time ratio, FLIP and PSNR), and print
the Markdown. Standard library only.

    python3 benches/report.py --work target/bench --results benches/results
"""

import argparse
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def by_scene(report):
    return {s["scene"]: s for s in (report or {}).get("scenes", [])}


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def merge(work, results):
    """Join the per-scene reports of run.sh's speed phase into one report per renderer:
    WORK/tessera-speed.json (also RESULTS/render-<device>.json) and
    RESULTS/cycles-cpu.json. Metadata (adapter, commit, date, settings) comes from the
    first scene's report; `load_average` is kept per scene."""
    for kind in ("tessera", "cycles"):
        merged = None
        for path in sorted(glob.glob(os.path.join(work, "speed", f"{kind}-*.json"))):
            r = load(path)
            if r is None:
                continue
            load_avg = (r.get("host") or {}).get("load_average")
            for s in r.get("scenes", []):
                s["load_average"] = load_avg
            if merged is None:
                merged = r
            else:
                merged["scenes"] += r.get("scenes", [])
        if merged is None:
            continue
        out = (
            [os.path.join(work, "tessera-speed.json"),
             os.path.join(results, f"render-{merged['device']}.json")]
            if kind == "tessera"
            else [os.path.join(results, "cycles-cpu.json")]
        )
        for o in out:
            with open(o, "w") as f:
                json.dump(merged, f, indent=2)
                f.write("\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="target/bench")
    p.add_argument("--results", default="benches/results")
    p.add_argument("--qspp", type=int, default=1024)
    p.add_argument("--merge", action="store_true", help="only merge the per-scene reports")
    a = p.parse_args()
    if a.merge:
        merge(a.work, a.results)
        return 0

    tessera = load(os.path.join(a.work, "tessera-speed.json"))
    cycles = load(os.path.join(a.results, "cycles-cpu.json"))
    tq = load(os.path.join(a.work, "tessera-quality.json"))
    cq = load(os.path.join(a.work, "cycles-quality.json"))
    if tessera is None:
        print("report.py: no tessera speed results in", a.work, file=sys.stderr)
        return 1
    device = tessera["device"]
    # The speed run's own report, kept under benches/results by `tessera bench render`.
    ts, cs = by_scene(tessera), by_scene(cycles)

    speed = []
    for name, t in ts.items():
        c = cs.get(name, {})
        tr, cr = t.get("render_s"), c.get("render_s")
        m = load(os.path.join(a.work, "speed", f"compare-{os.path.splitext(name)[0]}.json")) or {}
        speed.append(
            {
                "scene": name,
                "triangles": t.get("triangles"),
                "tessera_error": t.get("error"),
                "cycles_error": c.get("error"),
                "tessera_load_ms": t.get("load_ms"),
                "tessera_bvh_build_ms": t.get("bvh_build_ms"),
                "tessera_render_s": tr,
                "tessera_samples_per_second": t.get("samples_per_second"),
                "tessera_tiled_s": t.get("tiled_s"),
                "tessera_task_s": t.get("task_s"),
                "cycles_import_s": c.get("import_s"),
                "cycles_sync_s": c.get("sync_s"),
                "cycles_render_s": cr,
                "cycles_samples_per_second": c.get("samples_per_second"),
                "time_ratio_tessera_over_cycles": (tr / cr) if tr and cr else None,
                "tessera_mean_over_cycles_mean": (m["mean_b"] / m["mean_a"])
                if m.get("mean_a")
                else None,
                "flip_mean": m.get("flip_mean"),
            }
        )

    quality = []
    tqs, cqs = by_scene(tq), by_scene(cq)
    for path in sorted(glob.glob(os.path.join(a.work, "compare-*.json"))):
        stem = os.path.basename(path)[len("compare-") : -len(".json")]
        m = load(path)
        if m is None:
            continue
        t = next((v for k, v in tqs.items() if os.path.splitext(k)[0] == stem), {})
        c = next((v for k, v in cqs.items() if os.path.splitext(k)[0] == stem), {})
        tr, cr = t.get("render_s"), c.get("render_s")
        quality.append(
            {
                "scene": stem,
                "spp": a.qspp,
                "tessera_render_s": tr,
                "cycles_render_s": cr,
                "time_ratio_tessera_over_cycles": (tr / cr) if tr and cr else None,
                "tessera_mean_over_cycles_mean": (1.0 / m["exposure_scale"])
                if m.get("exposure_scale")
                else None,
                "psnr_db": m.get("psnr_db"),
                "flip_mean": m.get("flip_mean"),
                "flip_p99": m.get("flip_p99"),
            }
        )

    s = tessera["settings"]
    summary = {
        "format": "tessera-bench-summary v1",
        "device": device,
        "adapter": tessera["adapter"],
        "date_utc": tessera["date_utc"],
        "git_commit": tessera.get("git_commit"),
        "git_dirty": tessera.get("git_dirty"),
        "host": tessera.get("host"),
        "load_average_at_report": os.getloadavg(),
        "cycles": {
            "blender": (cycles or {}).get("blender"),
            "threads": ((cycles or {}).get("host") or {}).get("threads"),
            "settings": (cycles or {}).get("settings"),
        },
        "settings": s,
        "speed": speed,
        "quality": quality,
    }
    with open(os.path.join(a.results, f"summary-{device}.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    ad = tessera["adapter"]
    lines = [
        f"Tessera on {device} ({ad['adapter']}, {ad['driver_info']}) vs Blender "
        f"{summary['cycles']['blender']} Cycles CPU ({summary['cycles']['threads']} threads), "
        f"{(tessera.get('host') or {}).get('cpu')}, {tessera['date_utc']}, commit "
        f"{(tessera.get('git_commit') or '?')[:10]}{' (dirty)' if tessera.get('git_dirty') else ''}.",
        "",
        f"Speed: {s['width']}×{s['height']}, {s['spp']} spp, {s['max_bounces']} bounces, "
        "render only (no load, BVH build or scene sync); mean T/C = mean(Tessera)/mean(Cycles), "
        "FLIP = mean LDR FLIP after exposure matching (both images at this sample count, so "
        "noise included):",
        "",
        "| scene | triangles | Tessera s | Tessera samples/s | Cycles s | Cycles samples/s "
        "| Tessera/Cycles time | mean T/C | FLIP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in speed:
        if r["tessera_error"] or r["cycles_error"]:
            lines.append(
                f"| {r['scene']} | {fmt(r['triangles'], 'd')} | "
                f"{'failed' if r['tessera_error'] else fmt(r['tessera_render_s'], '.2f')} | "
                f"{fmt(r['tessera_samples_per_second'], ',.0f')} | "
                f"{'failed' if r['cycles_error'] else fmt(r['cycles_render_s'], '.2f')} | "
                f"{fmt(r['cycles_samples_per_second'], ',.0f')} | — | — | — |"
            )
            continue
        lines.append(
            f"| {r['scene']} | {fmt(r['triangles'], 'd')} | {fmt(r['tessera_render_s'], '.2f')} | "
            f"{fmt(r['tessera_samples_per_second'], ',.0f')} | {fmt(r['cycles_render_s'], '.2f')} | "
            f"{fmt(r['cycles_samples_per_second'], ',.0f')} | "
            f"{fmt(r['time_ratio_tessera_over_cycles'], '.2f')} | "
            f"{fmt(r['tessera_mean_over_cycles_mean'], '.3f')} | {fmt(r['flip_mean'], '.3f')} |"
        )
    if quality:
        lines += [
            "",
            f"Quality: {s['width']}×{s['height']}, {a.qspp} spp, {s['max_bounces']} bounces; "
            "A = Cycles, B = Tessera scaled by mean(A)/mean(B):",
            "",
            "| scene | Tessera s | Cycles s | Tessera/Cycles time | mean B/A | PSNR dB | FLIP mean | FLIP p99 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for q in quality:
            lines.append(
                f"| {q['scene']} | {fmt(q['tessera_render_s'], '.1f')} | "
                f"{fmt(q['cycles_render_s'], '.1f')} | "
                f"{fmt(q['time_ratio_tessera_over_cycles'], '.2f')} | "
                f"{fmt(q['tessera_mean_over_cycles_mean'], '.3f')} | "
                f"{'inf' if q['psnr_db'] is None else format(q['psnr_db'], '.2f')} | "
                f"{fmt(q['flip_mean'], '.4f')} | {fmt(q['flip_p99'], '.4f')} |"
            )
    md = "\n".join(lines) + "\n"
    with open(os.path.join(a.results, f"summary-{device}.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
