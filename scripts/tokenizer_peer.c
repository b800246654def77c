// Records what llama.cpp's tokenizer does with a vocabulary, for perch-tokenizer's tests.
// Built and run by scripts/record_tokenizer_peer.py against the peer's libllama; see there.
//
// usage: tokenizer_peer MODEL.gguf < cases
//   each input line: "<hex of text>" (the text may name {BOS} {EOS} {EOT}: replaced by those
//   tokens' texts). Output lines (all byte strings in hex, "-" for empty):
//     n_vocab N
//     special bos eos eot sep pad mask fim_pre fim_suf fim_mid fim_pad fim_rep fim_sep  (-1: none)
//     flags add_bos add_eos add_sep
//     eog id...
//     attr id attr            (a sample of ids, and every special and end-of-generation id)
//     text case hex           (the text after placeholder substitution)
//     ids case add_special parse_special id...
//     detok case add_special parse_special unparse_special hex
//     piece id special hex    (every id seen in a case)
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_hex(const char * s, size_t n) {
    if (n == 0) {
        fputs("-", stdout);
    }
    for (size_t i = 0; i < n; i++) {
        printf("%02x", (unsigned char) s[i]);
    }
}

static size_t from_hex(const char * h, char * out) {
    size_t n = 0;
    while (h[0] && h[1] && h[0] != '\n') {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (char) v;
        h += 2;
    }
    return n;
}

static void quiet(enum ggml_log_level level, const char * text, void * data) {
    (void) level; (void) text; (void) data;
}

#define MAX_TEXT 65536
#define MAX_TOK 65536
static char seen[1 << 20];

static size_t replace(char * buf, size_t n, const char * key, const char * with) {
    char tmp[MAX_TEXT];
    size_t klen = strlen(key), wlen = with ? strlen(with) : 0, m = 0;
    for (size_t i = 0; i < n;) {
        if (i + klen <= n && memcmp(buf + i, key, klen) == 0) {
            memcpy(tmp + m, with, wlen);
            m += wlen;
            i += klen;
        } else {
            tmp[m++] = buf[i++];
        }
    }
    memcpy(buf, tmp, m);
    return m;
}

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf < cases\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab * v = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(v);
    printf("n_vocab %d\n", n_vocab);
    const llama_token sp[] = {
        llama_vocab_bos(v), llama_vocab_eos(v), llama_vocab_eot(v), llama_vocab_sep(v),
        llama_vocab_pad(v), llama_vocab_mask(v), llama_vocab_fim_pre(v), llama_vocab_fim_suf(v),
        llama_vocab_fim_mid(v), llama_vocab_fim_pad(v), llama_vocab_fim_rep(v), llama_vocab_fim_sep(v),
    };
    const int n_sp = sizeof(sp) / sizeof(sp[0]);
    printf("special");
    for (int i = 0; i < n_sp; i++) {
        printf(" %d", sp[i]);
    }
    printf("\nflags %d %d %d\neog", llama_vocab_get_add_bos(v), llama_vocab_get_add_eos(v), llama_vocab_get_add_sep(v));
    for (int id = 0; id < n_vocab; id++) {
        if (llama_vocab_is_eog(v, id)) {
            printf(" %d", id);
        }
    }
    printf("\n");
    // attributes: every 4999th id, the first 64, the last 64, the special and eog ids
    for (int id = 0; id < n_vocab; id++) {
        int pick = id % 4999 == 0 || id < 64 || id >= n_vocab - 64 || llama_vocab_is_eog(v, id);
        for (int i = 0; i < n_sp; i++) {
            pick |= sp[i] == id;
        }
        if (pick) {
            printf("attr %d %d\n", id, (int) llama_vocab_get_attr(v, id));
        }
    }

    static char line[2 * MAX_TEXT + 4];
    static char text[MAX_TEXT];
    static llama_token toks[MAX_TOK];
    static char out[4 * MAX_TEXT];
    int case_no = 0;
    while (fgets(line, sizeof(line), stdin)) {
        size_t n = from_hex(line, text);
        const char * names[] = {"{BOS}", "{EOS}", "{EOT}"};
        const llama_token ids[] = {sp[0], sp[1], sp[2]};
        for (int i = 0; i < 3; i++) {
            n = replace(text, n, names[i], ids[i] >= 0 ? llama_vocab_get_text(v, ids[i]) : "");
        }
        printf("text %d ", case_no);
        put_hex(text, n);
        printf("\n");
        for (int add = 0; add < 2; add++) {
            for (int parse = 0; parse < 2; parse++) {
                int nt = llama_tokenize(v, text, (int32_t) n, toks, MAX_TOK, add, parse);
                if (nt < 0) {
                    fprintf(stderr, "too many tokens\n");
                    return 1;
                }
                printf("ids %d %d %d", case_no, add, parse);
                for (int i = 0; i < nt; i++) {
                    printf(" %d", toks[i]);
                    if (toks[i] >= 0 && toks[i] < (int) sizeof(seen)) {
                        seen[toks[i]] = 1;
                    }
                }
                printf("\n");
                for (int unparse = 0; unparse < 2; unparse++) {
                    int nc = llama_detokenize(v, toks, nt, out, sizeof(out), false, unparse);
                    if (nc < 0) {
                        fprintf(stderr, "detokenized text too long\n");
                        return 1;
                    }
                    printf("detok %d %d %d %d ", case_no, add, parse, unparse);
                    put_hex(out, (size_t) nc);
                    printf("\n");
                }
            }
        }
        case_no++;
    }
    for (int id = 0; id < n_vocab && id < (int) sizeof(seen); id++) {
        if (!seen[id]) {
            continue;
        }
        for (int special = 0; special < 2; special++) {
            int nc = llama_token_to_piece(v, id, out, sizeof(out), 0, special);
            printf("piece %d %d ", id, special);
            put_hex(out, nc > 0 ? (size_t) nc : 0);
            printf("\n");
        }
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
