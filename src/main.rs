// mimalloc: allocation was the largest user-space cost of a request left after the hot-path
// work (glibc's malloc consolidating its bins on every value-sized block); see
// docs/benchmarks.md. Built without transparent huge pages (feature `no_thp`): with them its
// arenas doubled the resident set of an idle server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cachegate::cli::main()
}
