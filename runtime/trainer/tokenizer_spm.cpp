// SentencePiece behind C (spm.h), one kind of mtx_tokenizer (tokenizer.c):
// the one C++ file of libmtxrt. No exception leaves it; errors come back
// as messages.
#include <sentencepiece_processor.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

extern "C" {
#include "spm.h"
}

struct Spm {
    sentencepiece::SentencePieceProcessor sp;
};

extern "C" Spm *spm_open(const char *path, char *err, size_t errlen)
{
    try {
        // Clearer messages than the library's for the common mistakes; a
        // FIFO must not hang the open, and protobuf aborts past 2 GiB.
        const char *why;
        uint64_t size;
        int fd = mtx_open_file(path, 0, &size, &why);
        if (fd < 0) {
            snprintf(err, errlen, "cannot read tokenizer model '%s': %s", path, why);
            return nullptr;
        }
        close(fd);
        if (size >= (uint64_t)1 << 31) {
            snprintf(err, errlen, "tokenizer model '%s' has %llu bytes; a SentencePiece model is under 2 GiB "
                     "(protobuf's limit)", path, (unsigned long long)size);
            return nullptr;
        }
        auto *t = new Spm;
        if (!t->sp.Load(path).ok()) {   // the library's message names its own source line, not the file
            snprintf(err, errlen, "tokenizer_path '%s' is not a SentencePiece model (it does not parse as one)", path);
            delete t;
            return nullptr;
        }
        return t;
    } catch (const std::exception &e) {
        snprintf(err, errlen, "cannot load tokenizer model '%s': %s", path, e.what());
        return nullptr;
    }
}

extern "C" int spm_vocab(const Spm *t) { return t->sp.GetPieceSize(); }
extern "C" int spm_bos(const Spm *t) { return t->sp.bos_id(); }
extern "C" int spm_eos(const Spm *t) { return t->sp.eos_id(); }

extern "C" int spm_encode(const Spm *t, const char *text, size_t len, mtx_tokens *out, char *err,
                                    size_t errlen)
{
    try {
        std::vector<int> ids;
        auto status = t->sp.Encode(std::string(text, len), &ids);
        if (!status.ok()) {
            snprintf(err, errlen, "cannot tokenize: %s", status.message());
            return 0;
        }
        for (int id : ids)
            if (!mtx_tokens_push(out, (uint32_t)id)) {
                snprintf(err, errlen, "out of memory after %lld tokens", (long long)out->n);
                return 0;
            }
        return 1;
    } catch (const std::exception &e) {
        snprintf(err, errlen, "cannot tokenize: %s", e.what());
        return 0;
    }
}

extern "C" char *spm_decode(const Spm *t, const int32_t *ids, int n)
{
    try {
        std::string text;
        if (!t->sp.Decode(std::vector<int>(ids, ids + n), &text).ok()) return nullptr;
        char *s = (char *)malloc(text.size() + 1);
        if (s) memcpy(s, text.c_str(), text.size() + 1);
        return s;
    } catch (const std::exception &) {
        return nullptr;
    }
}

extern "C" void spm_close(Spm *t) { delete t; }
