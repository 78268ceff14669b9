// A prover-shaped program shipped in a container image: its Entrypoint + Cmd give
// `--task NAME`, its Env `PROVER_MODE` and its WorkingDir the folder it reads its
// parameters from (a relative path). It prints what it was given and a "proof" (FNV-1a of
// the task and the parameters), then the done marker.
use std::env;
use std::fs;

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn main() {
    let args: Vec<String> = env::args().collect();
    println!("prover: argv={}", args.join(" "));
    let cwd = env::current_dir().map(|p| p.display().to_string());
    println!("prover: cwd={}", cwd.unwrap_or_else(|e| format!("error {e}")));
    let mode = env::var("PROVER_MODE").unwrap_or_else(|_| "unset".into());
    println!("prover: mode={mode}");
    let task = args
        .iter()
        .position(|a| a == "--task")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    match fs::read("params.txt") {
        Ok(params) => {
            let mut input = task.into_bytes();
            input.extend_from_slice(&params);
            println!("prover: proof={:016x}", fnv1a(&input));
        }
        Err(e) => println!("prover: params.txt: {e}"),
    }
    println!("HELLO-DONE");
}
