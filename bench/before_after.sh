#!/usr/bin/env bash
# `make bench` at an older commit and at the working tree, taking turns (ABBA), in this .venv:
#   bench/before_after.sh REV [TURNS] [-- BENCH ARGS]     e.g. bench/before_after.sh db13cc3 2 -- --no-peers
# Answers "did this change cost the CPU anything?" with runs side by side on one machine, so load
# hits both alike. REV is checked out in a temporary worktree and put first on PYTHONPATH as the
# `rescore_sidecar` namespace (the editable install's finder comes after it), so the benchmark, the
# sidecar processes it starts and the seeded model are REV's; the .venv's libraries are shared.
# Each run's table goes to $OUT_DIR (default bench-out/before-after/, git-ignored) as before-N.txt / after-N.txt; the
# last lines print each system's pairs/s per run and the median over turns of after/before, raw and
# with each run's figure taken over that run's own baseline (which cancels the machine's drift).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:?usage: $0 REV [TURNS] [-- BENCH ARGS]}; shift
turns=2
if [ $# -gt 0 ] && [ "$1" != "--" ]; then turns=$1; shift; fi
[ "${1:-}" = "--" ] && shift
out=${OUT_DIR:-$root/bench-out/before-after}
py=$root/.venv/bin/python
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/tree" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$root" worktree add -q --detach "$tmp/tree" "$rev"
mkdir "$tmp/path" && ln -s "$tmp/tree" "$tmp/path/rescore_sidecar"
data=${RESCORE_BENCH_DATA:-$(cd "$root/.." && pwd)/shared/data/cranfield}

run() {  # run SIDE TURN
    echo "turn $2/$turns: $1" >&2
    if [ "$1" = before ]; then
        (cd "$root" && PYTHONPATH="$tmp/path" "$py" "$tmp/tree/bench/sidecar_throughput.py" --data "$data" "${args[@]}")
    else
        (cd "$root" && "$py" bench/sidecar_throughput.py --data "$data" "${args[@]}")
    fi > "$out/$1-$2.txt"
}
args=("$@")
# before, after | after, before | ...: a machine that drifts over the run favours neither side
for turn in $(seq "$turns"); do
    if [ $((turn % 2)) = 1 ]; then run before "$turn"; run after "$turn"; else run after "$turn"; run before "$turn"; fi
done
"$py" - "$out" "$turns" "$rev" <<'PY'
import pathlib, statistics, sys

out, turns, rev = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def rows(path):
    table = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[2].isdigit():  # pairs/s, and pairs/s over this run's baseline
            table[(cells[0], cells[1], int(cells[2]))] = (float(cells[3]), float(cells[4].rstrip("x")))
    return table

runs = {side: [rows(out / f"{side}-{t}.txt") for t in range(1, turns + 1)] for side in ("before", "after")}
print(next(l for l in (out / "after-1.txt").read_text().splitlines() if l.startswith("machine:")))
print(f"\n| system | dtype | clients | pairs/s before ({rev}) | pairs/s after | after/before | "
      "after/before, each over its run's baseline |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for key in runs["after"][0]:
    if not all(key in r for side in runs.values() for r in side):
        continue
    before, after = ([r[key] for r in runs[side]] for side in ("before", "after"))
    raw = statistics.median(a[0] / b[0] for a, b in zip(after, before))
    relative = statistics.median(a[1] / b[1] for a, b in zip(after, before))
    print(f"| {key[0]} | {key[1]} | {key[2]} | {' / '.join(f'{v[0]:.1f}' for v in before)} | "
          f"{' / '.join(f'{v[0]:.1f}' for v in after)} | {raw:.2f}x | {relative:.2f}x |")
print(f"\nmedians over {turns} turns of per-turn ratios; the baseline (CrossEncoder.predict in the bench's own "
      "process) is the same code in both, so its after/before is the machine's drift")
PY
