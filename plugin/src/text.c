/* text.c - the tokenizer of models that ship a text encoder (docs/MODEL.md section 6): lower-case
 * words of [a-z0-9], looked up in the config's vocabulary, unknown words -> id 1. */
#include "engine.h"

#include <ctype.h>
#include <string.h>

int wm_tokenize(const wm_config *c, const char *text, int *ids, int max) {
    int n = 0;
    const char *p = text;
    char word[256];
    while (*p && n < max) {
        while (*p && !(isalnum((unsigned char)*p) && (unsigned char)*p < 128)) p++;
        size_t len = 0;
        while (*p && isalnum((unsigned char)*p) && (unsigned char)*p < 128) {
            if (len + 1 < sizeof word) word[len++] = (char)tolower((unsigned char)*p);
            p++;
        }
        if (!len) break;
        word[len] = 0;
        int id = 1;
        for (int v = 0; v < c->vocab_size; v++)
            if (strcmp(c->vocab[v], word) == 0) { id = v; break; }
        ids[n++] = id;
    }
    return n;
}
