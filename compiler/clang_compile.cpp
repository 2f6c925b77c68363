// C source in memory -> LLVM module, with clang's frontend libraries. The
// only C++ in mtxc: clang has no C API for this. See clang_compile.h.
#include "clang_compile.h"

#include <clang/Basic/Diagnostic.h>
#include <clang/Basic/DiagnosticOptions.h>
#include <clang/Basic/Version.h>
#include <clang/CodeGen/CodeGenAction.h>
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/CompilerInvocation.h>
#include <clang/Frontend/FrontendActions.h>
#include <clang/Frontend/TextDiagnosticPrinter.h>
#include <clang/Lex/PreprocessorOptions.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/TargetParser/Host.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <string>
#include <vector>

// clang's resource directory (stddef.h, stdarg.h, ...) sits next to the
// libclang-cpp this process loaded: <libdir>/clang/<major version>. Debian
// keeps the library itself elsewhere and links it from <libdir>, so try the
// path the loader used before the resolved one.
static std::string resource_dir()
{
    Dl_info info;
    if (!dladdr(reinterpret_cast<void *>(&clang::getClangFullVersion), &info) || !info.dli_fname) return "";
    char real[PATH_MAX];
    std::string libs[2] = {info.dli_fname, realpath(info.dli_fname, real) ? real : ""};
    for (const std::string &lib : libs) {
        std::string dir = lib.substr(0, lib.rfind('/')) + "/clang/" + CLANG_VERSION_MAJOR_STRING;
        struct stat st;
        if (!lib.empty() && stat((dir + "/include/stddef.h").c_str(), &st) == 0) return dir;
    }
    return "";
}

extern "C" const char *clang_resource_dir(void)
{
    static std::string dir = resource_dir();
    return dir.c_str();
}

/* A compiler instance for files[0] (the others are headers it may include),
 * configured for the host; NULL with the reason in err. */
static std::unique_ptr<clang::CompilerInstance> make_instance(const VirtualFile *files, int nfiles,
                                                             const char *const *cc1_args, int nargs,
                                                             llvm::raw_string_ostream &diag_os, char *err, size_t errlen)
{
    std::string res = clang_resource_dir();
    if (res.empty()) {
        snprintf(err, errlen, "mtxc: error: clang's resource directory (with stddef.h) was not found next to "
                              "libclang-cpp; install libclang-common-19-dev (tools/install-deps)");
        return nullptr;
    }
    auto diag_opts = llvm::makeIntrusiveRefCnt<clang::DiagnosticOptions>();
    clang::DiagnosticsEngine diags(llvm::makeIntrusiveRefCnt<clang::DiagnosticIDs>(), diag_opts,
                                   new clang::TextDiagnosticPrinter(diag_os, diag_opts.get()), true);

    // cc1 arguments, not driver ones: no system include paths unless given.
    std::string inc = res + "/include";
    std::vector<const char *> args = {
        "-resource-dir", res.c_str(), "-internal-isystem", inc.c_str(),
        "-internal-externc-isystem", "/usr/include/x86_64-linux-gnu",
        "-internal-externc-isystem", "/usr/include", "-x", "c"};
    for (int i = 0; i < nargs; i++) args.push_back(cc1_args[i]);
    args.push_back(files[0].path);

    auto inv = std::make_shared<clang::CompilerInvocation>();
    if (!clang::CompilerInvocation::CreateFromArgs(*inv, args, diags)) {
        diag_os.flush();
        snprintf(err, errlen, "mtxc: error: clang refused its arguments: %s", diag_os.str().c_str());
        return nullptr;
    }
    // The host CPU, as -march=native would choose it.
    clang::TargetOptions &target = inv->getTargetOpts();
    target.Triple = llvm::sys::getProcessTriple();
    target.CPU = llvm::sys::getHostCPUName().str();
    for (auto &feature : llvm::sys::getHostCPUFeatures())
        target.FeaturesAsWritten.push_back((feature.second ? "+" : "-") + feature.first().str());
    for (int i = 0; i < nfiles; i++)
        inv->getPreprocessorOpts().addRemappedFile(
            files[i].path, llvm::MemoryBuffer::getMemBufferCopy(files[i].text, files[i].path).release());

    auto ci = std::make_unique<clang::CompilerInstance>();
    ci->setInvocation(inv);
    ci->createDiagnostics(new clang::TextDiagnosticPrinter(diag_os, &inv->getDiagnosticOpts()), true);
    ci->setVerboseOutputStream(diag_os);   // "1 error generated." belongs with the diagnostics
    return ci;
}

extern "C" LLVMModuleRef clang_compile_c(LLVMContextRef ctx, const VirtualFile *files, int nfiles,
                                         const char *const *cc1_args, int nargs, char *err, size_t errlen)
{
    std::string diag_text;
    llvm::raw_string_ostream diag_os(diag_text);
    auto ci = make_instance(files, nfiles, cc1_args, nargs, diag_os, err, errlen);
    if (!ci) return nullptr;
    clang::EmitLLVMOnlyAction action(llvm::unwrap(ctx));
    bool ok = ci->ExecuteAction(action);
    diag_os.flush();
    if (!ok) {
        snprintf(err, errlen, "%s", diag_text.c_str());
        return nullptr;
    }
    std::unique_ptr<llvm::Module> module = action.takeModule();
    if (!module) {
        snprintf(err, errlen, "mtxc: error: clang produced no module");
        return nullptr;
    }
    return llvm::wrap(module.release());
}

extern "C" int clang_check_c(const VirtualFile *files, int nfiles, char *err, size_t errlen)
{
    std::string diag_text;
    llvm::raw_string_ostream diag_os(diag_text);
    const char *args[] = {"-std=gnu11", "-Wno-everything"};
    auto ci = make_instance(files, nfiles, args, 2, diag_os, err, errlen);
    if (!ci) return -1;
    clang::SyntaxOnlyAction action;
    bool ok = ci->ExecuteAction(action);
    diag_os.flush();
    if (!ok) snprintf(err, errlen, "%s", diag_text.c_str());
    return ok ? 0 : -1;
}
