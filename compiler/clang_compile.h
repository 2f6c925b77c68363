/* C header of clang_compile.cpp: the clang frontend behind a C interface. */
#ifndef CLANG_COMPILE_H
#define CLANG_COMPILE_H

#include <stddef.h>
#include <llvm-c/Types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *path;      /* the name diagnostics and #include use */
    const char *text;
} VirtualFile;

/* Compile files[0] as C (cc1 arguments in cc1_args, e.g. -O3) for the host
 * CPU into a module owned by ctx; the other files are headers it may include.
 * Returns NULL with clang's diagnostics in err. No file is read or written. */
LLVMModuleRef clang_compile_c(LLVMContextRef ctx, const VirtualFile *files, int nfiles,
                              const char *const *cc1_args, int nargs, char *err, size_t errlen);

/* Parse and type-check files[0] only (clang -fsyntax-only); 0, or -1 with
 * clang's diagnostics in err. */
int clang_check_c(const VirtualFile *files, int nfiles, char *err, size_t errlen);

/* clang's resource directory found at run time, or "" if missing. */
const char *clang_resource_dir(void);

#ifdef __cplusplus
}
#endif

#endif
