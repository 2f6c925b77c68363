/* libmtxrt's trainer side: what runs around the generated steps. Files,
 * the tokenizer, sampling, data, checkpoints and their saver, decoding.
 * Used by the runtime's trainer (runtime/trainer/) and by mtxc's own
 * commands; generated code never sees it. */
#ifndef MTXRT_TRAINER_H
#define MTXRT_TRAINER_H

#include "mtxrt.h"

/* ---- files (file.c) ---- */

/* A file opened to read (file.c): a regular file, or with pipes_ok also a
 * pipe (/dev/stdin, <(...)); never blocks on a FIFO with no writer. The fd
 * and, if size is not NULL, the file's size (0 for a pipe); or -1 with *why
 * (strerror's words, or what the path is instead). */
int mtx_open_file(const char *path, int pipes_ok, uint64_t *size, const char **why);
/* A whole file, NUL-terminated, refused past max bytes as they are read;
 * NULL with *why. */
char *mtx_read_file(const char *path, size_t max, int pipes_ok, size_t *size, const char **why);
/* All n bytes at offset at (pread), or all n bytes out (write), retrying
 * after signals: 0, or -1 with errno (EIO for a file that ends early). */
int mtx_read_at(int fd, void *buf, size_t n, uint64_t at);
int mtx_write_all(int fd, const void *data, size_t n);
/* A small file written whole and fsync'ed: 0, or -1 with errno. */
int mtx_write_text(const char *path, const char *text);

/* ---- tokenizers (tokenizer.c): three kinds behind one interface ---- */

typedef struct { uint32_t *v; int64_t n, cap; } mtx_tokens;   /* a growing list of token ids */
int mtx_tokens_push(mtx_tokens *t, uint32_t id);             /* 0: out of memory (data.c) */

/* tokenizer_type sentencepiece (a SentencePiece model, tokenizer_spm.cpp),
 * huggingface (a byte-level BPE tokenizer.json or a directory holding one,
 * tokenizer_json.c) or tiktoken (a rank file with Llama 3's pattern and
 * special tokens, tiktoken.c); the last two share bpe.c. */
typedef struct mtx_tokenizer mtx_tokenizer;
mtx_tokenizer *mtx_tokenizer_open(const char *type, const char *path, char *err, size_t errlen);   /* NULL + message */
const char *mtx_tokenizer_kind(const mtx_tokenizer *t);   /* "SentencePiece", "Hugging Face tokenizer", "tiktoken" */
int mtx_tokenizer_vocab(const mtx_tokenizer *t);   /* the largest id + 1 */
int mtx_tokenizer_bos(const mtx_tokenizer *t);     /* -1: the tokenizer has none */
int mtx_tokenizer_eos(const mtx_tokenizer *t);
/* Appends the ids of text (no bos / eos); 0 + message on error. */
int mtx_tokenizer_encode(const mtx_tokenizer *t, const char *text, size_t len, mtx_tokens *out, char *err,
                         size_t errlen);
/* Each non-empty line of text as bos (add_bos) + ids + eos (add_eos),
 * over the trainer's threads for large texts (the same ids for any thread
 * count); a progress line on stderr every second, naming label. With docs,
 * where each line's tokens start (malloc'd, *ndocs of them). */
int mtx_tokenizer_encode_lines(const mtx_tokenizer *t, const char *text, size_t len, bool add_bos, bool add_eos,
                               const char *label, mtx_tokens *out, int64_t **docs, int64_t *ndocs, char *err,
                               size_t errlen);
char *mtx_tokenizer_decode(const mtx_tokenizer *t, const int32_t *ids, int n);   /* malloc'd; NULL on error */
void mtx_tokenizer_close(mtx_tokenizer *t);
/* tokenizer_type's tokenizer at path, holding at most vocab ids; NULL + message. */
mtx_tokenizer *mtx_tokenizer_for(const char *type, const char *path, int vocab, char *err, size_t errlen);

/* ---- sampling (sampling.c): the next token from logits, as MaxText ---- */

typedef enum { MTX_SAMPLE_GREEDY, MTX_SAMPLE_WEIGHTED, MTX_SAMPLE_NUCLEUS, MTX_SAMPLE_TOPK, MTX_SAMPLE_COMPOSITE } mtx_sample_strategy;
typedef struct {
    mtx_sample_strategy strategy;
    int top_k;                 /* topk, composite: > 0 */
    float nucleus_p;           /* nucleus, composite: (0, 1] */
    float temperature;         /* 0: greedy */
} mtx_sampling;
/* A token id; draws use the uniform number (key, counter). */
int mtx_sample(const float *logits, int vocab, const mtx_sampling *s, mtx_rng_key key, uint64_t counter);

/* ---- data (data.c) ---- */

typedef struct mtx_data mtx_data;
typedef struct {
    const char *type;                 /* dataset_type: synthetic, tokens, text, hf */
    const char *path, *eval_path;     /* dataset_path, eval_dataset_path ("" : the last tenth of path) */
    const char *tokenizer_type, *tokenizer_path;   /* text: "" = one token per byte */
    bool add_bos, add_eos;            /* around each line of text, with a tokenizer */
    const char *hf_path, *train_files, *eval_files;   /* hf: "json", globs */
    const char *column, *eval_column;                 /* hf: train_data_columns[0], eval_data_columns[0] */
    bool packing;
    int vocab, batch, seq;
    bool shuffle;
    uint64_t seed;
} mtx_data_options;
/* Opens the data. Every file is read and checked here; NULL with one
 * message on error. */
mtx_data *mtx_data_open(const mtx_data_options *o, char *err, size_t errlen);
void mtx_data_next(mtx_data *d, mtx_batch *b);
int64_t mtx_data_eval_batches(mtx_data *d, int batch);   /* full eval batches of `batch` rows (packed: all of them) */
void mtx_data_eval_reset(mtx_data *d);
void mtx_data_next_eval(mtx_data *d, mtx_batch *b);
void mtx_data_tokens(const mtx_data *d, int64_t *train, int64_t *eval);   /* of files; 0 for synthetic */
const char *mtx_data_tokenizer(const mtx_data *d);   /* its kind (mtx_tokenizer_kind), or "bytes" */
const char *mtx_data_describe(const mtx_data *d);    /* a line saying what the examples are (hf), or "" */
uint64_t mtx_data_position(const mtx_data *d);      /* training sequences handed out */
void mtx_data_seek(mtx_data *d, uint64_t position);
void mtx_data_close(mtx_data *d);
void mtx_batch_alloc(mtx_batch *b, int batch, int seq);
void mtx_batch_free(mtx_batch *b);

/* ---- checkpoints (checkpoint.c) ---- */

/* Save a block laid out as the state (the live state, read only) and the
 * data position as dir/{step}/ (state.safetensors, meta.json), atomically.
 * 0, or -1 with a message; earlier checkpoints stay. */
int mtx_checkpoint_write(const mtx_program *prog, const void *state_memory, const char *dir, long long step,
                         uint64_t data_position, char *err, size_t errlen);
/* The step a step directory's name says: plain decimal as the trainer
 * writes it ("0", "20"; not "020", "+2" or past 2^63-1), else -1. */
long long mtx_step_name(const char *name);
/* The step of the latest complete checkpoint in dir, or -1. Only real
 * directories with a step's name count; with notices, other entries are
 * named on stderr. */
long long mtx_checkpoint_latest(const char *dir, int notices);
/* Remove all but the newest `keep` complete checkpoints of dir (never
 * through a symlink). */
void mtx_checkpoint_prune(const char *dir, int keep);
/* Load step_dir into st (only params/ tensors if params_only): every name,
 * dtype, shape and size checked before a tensor is read, every checksum as
 * its tensor arrives; 0, or -1 naming the file and tensor at fault (st is
 * untouched when the metadata is at fault, unspecified after a bad checksum:
 * the callers stop). */
int mtx_checkpoint_load(const mtx_program *prog, mtx_state *st, const char *step_dir, int params_only,
                        uint64_t *data_position, char *err, size_t errlen);
#define MTX_CHECKPOINT_FORMAT "mtxc-checkpoint-2"
/* A sharded state's checkpoint directory (train.c): fsdp-{f}-of-{F},
 * tensor-{t}-of-{T}, expert-{e}-of-{E} of the axes of more than one device,
 * joined by '.', at coord[] (indexed by mesh axis: 1 fsdp, 2 tensor, 3 expert). */
void mtx_shard_name(const mtx_program *prog, const int coord[4], char *out, size_t n);
int mtx_is_shard_name(const char *name);   /* is name one such directory's? */

/* ---- Hugging Face model directories (hf_checkpoint.c) ---- */

/* Does dir hold a Hugging Face model (config.json) rather than a checkpoint (meta.json)? */
int mtx_hf_dir(const char *dir);
/* The parameters of dir's safetensors into st, checked against config.json
 * and the program's layout (mtx_program.hf); 0, or -1 with a message
 * naming the file and tensor (st unspecified: the callers stop). */
int mtx_hf_load(const mtx_program *prog, mtx_state *st, const char *dir, char *err, size_t errlen);
/* The layout of one Hugging Face tensor (hf_layout.c). The whole
 * parameter's elements: */
int64_t mtx_hf_numel(const mtx_hf_tensor *m);
/* The part of the whole parameter the tensor is: [rows, cols] from element first. */
void mtx_hf_view(const mtx_hf_tensor *m, int64_t *rows, int64_t *cols, size_t *first);
/* The tensor's shape in Hugging Face's file; its rank. */
int mtx_hf_shape(const mtx_hf_tensor *m, int64_t shape[2]);
/* Where each of the view's cols columns lives in the tensor (a row when
 * transposed), after RoPE's pairs: malloc'd, NULL if out of memory. */
int64_t *mtx_hf_columns(const mtx_hf_tensor *m, int64_t cols);
/* Does a device hold less than the whole parameter? */
int mtx_hf_sharded(const mtx_hf_tensor *m);
/* A device's share of the whole parameter, its tensor d in the state at
 * memory: from the whole (to_whole 0; an fsdp chunk's padding zeroed) or
 * into it. fsdp: the fsdp axis's size; fsdp_coord and coord: the device's
 * place on it and on m->split_axis. */
void mtx_hf_share(const mtx_hf_tensor *m, const mtx_tensor_desc *d, float *whole, void *memory, int fsdp,
                  int fsdp_coord, int coord, int to_whole);
/* A trainer's `export` command (hf_export.c): load_parameters_path's
 * parameters written as a Hugging Face model directory (-o DIR). */
int mtx_export_main(const mtx_program *prog, int argc, char **argv);

/* ---- asynchronous checkpoints (saver.c) ---- */

/* How one save went, handed out once by mtx_saver_poll / mtx_saver_start. */
typedef struct {
    long long step;
    int rc;                               /* 0, or -1 with err */
    int background;                       /* written by the writer thread while training went on */
    int finished;                         /* the writer is done (read with acquire) */
    double mb, seconds;                   /* state size; from the start of the save to its rename */
    double waited;                        /* of which a step's update waited for the write */
    char err[1024];
} mtx_save_result;
typedef struct mtx_saver mtx_saver;
/* async 1: MaxText's async_checkpointing (a writer thread per save, from
 * the live state, which steps change only after mtx_state_will_change). */
mtx_saver *mtx_saver_new(const mtx_program *prog, int async);
/* Save st as checkpoint `step` of dir (then keep the newest `keep`, 0: all).
 * Waits for the previous save first; returns 1 with its result in
 * *previous if it had one not yet handed out, else 0. */
int mtx_saver_start(mtx_saver *s, const mtx_state *st, const char *dir, long long step, uint64_t position, int keep,
                    mtx_save_result *previous);
/* The result of the last save if it is done (wait 1: wait for it): 1, or 0
 * when there is none to hand out. */
int mtx_saver_poll(mtx_saver *s, int wait, mtx_save_result *out);
/* Waits for a save in flight, then frees. */
void mtx_saver_free(mtx_saver *s);

/* ---- decoding (decode.c): a trainer's `decode` command ---- */

int mtx_decode_main(const mtx_program *prog, int argc, char **argv);

#endif
