# Sourced by shell tests that compare metrics files (a trainer's metrics_file,
# one JSON object per line).

# learning FILE: each line's learning metrics, without the timings.
learning() { sed 's/, "perf.*//' "$1"; }

# worst_diff NAME A B TOLERANCE LINES: prints the worst relative difference of
# losses, gradient norms and eval losses between two metrics files; fails
# unless it is at most TOLERANCE and both have LINES lines.
worst_diff() {
    paste -d' ' "$2" "$3" | tr -d '{},"' | awk -v name="$1" -v tol="$4" -v lines="$5" '
        { for (i = 1; i <= NF; i++) if ($i == "learning/loss:" || $i == "learning/grad_norm:" || $i == "eval/avg_loss:") v[++c] = $(i + 1)
          for (j = 1; j <= c / 2; j++) { a = v[j]; b = v[j + c / 2]; rel = (a - b) / a; if (rel < 0) rel = -rel; if (rel > worst) worst = rel }
          c = 0 }
        END { printf "%s: worst relative difference %.2g over %d lines\n", name, worst, NR; exit !(NR == lines && worst <= tol) }'
}
