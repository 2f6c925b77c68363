#!/bin/sh
# Loss curve from a metrics_file: training loss per step and eval loss, as a PNG.
# Usage: tools/plot_metrics.sh METRICS.jsonl OUT.png [TITLE]   (gnuplot from tools/install-deps)
set -e
[ $# -ge 2 ] || { sed -n '2,3p' "$0" | sed 's/^# //'; exit 2; }
in=$1; out=$2; title=${3:-$(basename "$in")}
[ -r "$in" ] || { echo "plot_metrics: error: cannot read '$in'" >&2; exit 2; }
command -v gnuplot > /dev/null || { echo "plot_metrics: error: gnuplot is missing; run tools/install-deps" >&2; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
sed -n 's/.*"step": \([0-9]*\), "learning\/loss": \([-0-9.e+]*\).*/\1 \2/p' "$in" > "$dir/train"
sed -n 's/.*"step": \([0-9]*\), "eval\/avg_loss": \([-0-9.e+]*\).*/\1 \2/p' "$in" > "$dir/eval"
[ -s "$dir/train" ] || { echo "plot_metrics: error: '$in' has no learning/loss lines" >&2; exit 2; }
plot="'$dir/train' using 1:2 with lines lw 1.5 title 'train loss'"
[ -s "$dir/eval" ] && plot="$plot, '$dir/eval' using 1:2 with linespoints lw 2 pt 7 title 'eval loss'"
gnuplot <<GP
set terminal pngcairo size 900,540 enhanced font 'sans,11'
set output '$out.tmp'
set title '$title'
set xlabel 'step'
set ylabel 'loss (nats per token)'
set grid
set key top right
plot $plot
GP
mv "$out.tmp" "$out"
echo "wrote $out"
