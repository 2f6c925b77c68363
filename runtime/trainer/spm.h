/* libmtxrt-internal: SentencePiece (tokenizer_spm.cpp), one kind of
 * mtx_tokenizer (tokenizer.c). */
#ifndef MTX_SPM_H
#define MTX_SPM_H

#include "mtxrt_trainer.h"

typedef struct Spm Spm;
Spm *spm_open(const char *path, char *err, size_t errlen);   /* NULL + message */
int spm_vocab(const Spm *t);
int spm_bos(const Spm *t);   /* -1: none */
int spm_eos(const Spm *t);
int spm_encode(const Spm *t, const char *text, size_t len, mtx_tokens *out, char *err, size_t errlen);
char *spm_decode(const Spm *t, const int32_t *ids, int n);   /* malloc'd; NULL on error */
void spm_close(Spm *t);

#endif
