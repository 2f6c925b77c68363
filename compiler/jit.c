/* `mtxc run`: the generated C compiled in memory by clang (clang_compile.cpp)
 * and linked into this process by LLVM's ORC LLJIT, through LLVM's C API.
 * The generated code calls libmtxrt, which mtxc carries whole and exports. */
#include "mtxc.h"

#include "clang_compile.h"

#include <limits.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <stdlib.h>
#include <string.h>

/* The same floating-point contract as mtxc build (see DEFAULT_CFLAGS in
 * main.c): no FMA contraction; math functions set no errno (cc1's default,
 * unless -fmath-errno is given). The vectorizers are driver defaults at -O3.
 * No unrolling, as gcc at -O3: the fused loops are memory-bound, and
 * unrolling them doubled the compile time of a 12-layer model. */
static const char *const cc1_args[] = {
    "-O3", "-vectorize-loops", "-vectorize-slp", "-fno-unroll-loops", "-ffp-contract=off", "-std=gnu11",
    "-Wno-everything",
};

struct Jit {
    LLVMOrcLLJITRef lljit;
};

static bool failed(LLVMErrorRef e, const char *what, char *err, size_t errlen)
{
    if (!e) return false;
    char *msg = LLVMGetErrorMessage(e);
    snprintf(err, errlen, "mtxc: error: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return true;
}

/* An LLJIT for the host CPU. The IR is already optimized by clang at -O3;
 * the default code generation level costs a fifth less than aggressive. */
static LLVMOrcLLJITRef make_lljit(char *err, size_t errlen)
{
    char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        snprintf(err, errlen, "mtxc: error: no LLVM target for %s: %s", triple, msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelDefault,
                                                      LLVMRelocDefault, LLVMCodeModelJITDefault);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMOrcLLJITRef lljit;
    if (failed(LLVMOrcCreateLLJIT(&lljit, builder), "cannot create the JIT", err, errlen)) return NULL;
    /* Symbols the module does not define (libmtxrt, libm) come from this process. */
    LLVMOrcDefinitionGeneratorRef gen;
    if (failed(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(lljit), NULL, NULL),
               "cannot search this process for symbols", err, errlen)) {
        LLVMOrcDisposeLLJIT(lljit);
        return NULL;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(lljit), gen);
    return lljit;
}

const mtx_program *jit_load(const GeneratedC *g, const char *keep_dir, Jit **out, JitTimes *t,
                            char *err, size_t errlen)
{
    *out = NULL;
    char dir[PATH_MAX] = "/mtxc-generated";
    if (keep_dir) {
        if (!write_generated_c(g, keep_dir, err, errlen)) return NULL;
        if (!realpath(keep_dir, dir)) snprintf(dir, sizeof dir, "%s", keep_dir);
        /* Next to step.h, for a reader compiling the kept source by hand. */
        char *h = xfmt("%s/mtxrt.h", dir);
        FILE *f = fopen(h, "w");
        if (f) {
            fputs(template_mtxrt_h, f);
            fclose(f);
        }
        free(h);
    }
    char *c_path = xfmt("%s/step.c", dir), *h_path = xfmt("%s/step.h", dir), *rt_path = xfmt("%s/mtxrt.h", dir);
    VirtualFile files[3] = {{c_path, g->step_c}, {h_path, g->step_h}, {rt_path, template_mtxrt_h}};
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();

    double t0 = mtx_seconds();
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    char diag[8192];
    LLVMModuleRef module = clang_compile_c(LLVMOrcThreadSafeContextGetContext(tsc), files, 3, cc1_args,
                                           (int)(sizeof cc1_args / sizeof cc1_args[0]), diag, sizeof diag);
    double t1 = mtx_seconds();
    const mtx_program *prog = NULL;
    if (!module) {
        snprintf(err, errlen, "%s\nmtxc: error: the generated C did not compile (a bug in mtxc: please report it)%s",
                 diag, keep_dir ? "" : "; mtxc run --keep-source DIR keeps the source for inspection");
        LLVMOrcDisposeThreadSafeContext(tsc);
        goto done;
    }
    LLVMOrcLLJITRef lljit = make_lljit(err, errlen);
    if (!lljit) {
        LLVMDisposeModule(module);
        LLVMOrcDisposeThreadSafeContext(tsc);
        goto done;
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(module, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);        /* the module keeps it alive */
    LLVMOrcExecutorAddress addr = 0;
    if (failed(LLVMOrcLLJITAddLLVMIRModule(lljit, LLVMOrcLLJITGetMainJITDylib(lljit), tsm), "cannot add the module",
               err, errlen) ||
        failed(LLVMOrcLLJITLookup(lljit, &addr, "mtx_program_desc"), "cannot link the generated code", err, errlen)) {
        LLVMOrcDisposeLLJIT(lljit);
        goto done;
    }
    *out = xcalloc(1, sizeof(Jit));
    (*out)->lljit = lljit;
    prog = (const mtx_program *)(uintptr_t)addr;
    t->compile = t1 - t0;
    t->link = mtx_seconds() - t1;
done:
    free(c_path);
    free(h_path);
    free(rt_path);
    return prog;
}

bool jit_check_c(const GeneratedC *g, char *err, size_t errlen)
{
    VirtualFile files[3] = {{"/mtxc-generated/step.c", g->step_c}, {"/mtxc-generated/step.h", g->step_h},
                            {"/mtxc-generated/mtxrt.h", template_mtxrt_h}};
    char diag[8192];
    if (clang_check_c(files, 3, diag, sizeof diag) == 0) return true;
    snprintf(err, errlen, "%s\nmtxc: error: the generated C does not compile (a bug in mtxc: please report it)", diag);
    return false;
}

void jit_free(Jit *j)
{
    if (!j) return;
    LLVMOrcDisposeLLJIT(j->lljit);
    free(j);
}
