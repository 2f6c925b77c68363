/* Text helpers shared by mtxc and trainers: names, messages, suggestions
 * for mistyped names ("did you mean"). */
#include "mtxrt_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mtx_is_dir_name(const char *s)
{
    return !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

void mtx_escape_controls(const char *text, char *out, size_t n)
{
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)text; *s && o + 5 < n; s++) {
        if (*s == '\n') o += (size_t)snprintf(out + o, n - o, "\\n");
        else if (*s == '\t') o += (size_t)snprintf(out + o, n - o, "\\t");
        else if (*s < 0x20 || *s == 0x7f) o += (size_t)snprintf(out + o, n - o, "\\x%02x", *s);
        else out[o++] = (char)*s;
    }
    if (n) out[o < n ? o : n - 1] = 0;
}

/* Levenshtein distance, one row at a time. */
int mtx_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int *row = malloc((lb + 1) * sizeof(int));
    if (!row) return (int)(la > lb ? la : lb);
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    int d = row[lb];
    free(row);
    return d;
}

uint64_t mtx_name_hash(const char *name, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return h;
}

const char *mtx_closest_word(const char *word, const char *const *candidates, int n)
{
    const char *best = NULL;
    /* A suggestion further away than a third of the word is noise; the
     * distance is at least the difference in length, so a word of another
     * length (a 3 MB model_name) costs nothing. */
    size_t len = strlen(word);
    int limit = (int)(len / 3 + 1), best_d = limit + 1;
    for (int i = 0; i < n; i++) {
        size_t other = strlen(candidates[i]);
        if ((len > other ? len - other : other - len) > (size_t)limit) continue;
        int d = mtx_edit_distance(word, candidates[i]);
        if (d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    if (best) return best;
    /* A word that contains the typed one (emb_dim -> base_emb_dim) is also a good guess. */
    for (int i = 0; i < n; i++)
        if (strlen(word) >= 4 && strstr(candidates[i], word)) return candidates[i];
    return NULL;
}
