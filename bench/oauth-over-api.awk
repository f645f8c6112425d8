# The standard endpoints against their /api/v1 equivalents in loadgen output with --rounds:
# per round, oauth ÷ api of req/s (the 5th field of a round's table), then the median of those.
#   awk -f bench/oauth-over-api.awk <loadgen output>
/^round [0-9]+ of/ { round = $2; next }
/^median of/ { round = 0; next }
round && NF >= 5 && $5 ~ /^[0-9.]+$/ { r[round, $1] = $5; rounds[round] = 1 }
function median(a, n,    i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function pair(ours, theirs,    n, k, line, v) {
    n = 0; line = ""
    for (k = 1; (k, ours) in r; k++) {
        v[++n] = r[k, ours] / r[k, theirs]
        line = line sprintf(" %.0f/%.0f=%.2f", r[k, ours], r[k, theirs], v[n])
    }
    printf "%s / %s, per round:%s; median %.2f\n", ours, theirs, line, median(v, n)
}
END {
    pair("oauth-token-direct", "issue-direct")
    pair("oauth-introspect-direct", "introspect-direct")
}
