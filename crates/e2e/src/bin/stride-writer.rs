//! `stride-writer FILE PHASE STRIDE COUNT BLOCK THREADS`: writes COUNT blocks of BLOCK bytes
//! with O_DIRECT at block numbers PHASE, PHASE+STRIDE, ... of an existing FILE, from THREADS
//! threads (synchronous pwrite, each thread every THREADS-th block of the process's).
//! Several of them with the same STRIDE (at least 2) and different PHASEs write interleaved
//! blocks: adjacent blocks always belong to different processes, so every merge the I/O
//! scheduler makes among them joins several processes' data in one request. That is the
//! workload of the biotop merge test; the threads keep enough writes queued for merges.

use std::os::unix::fs::{FileExt, OpenOptionsExt};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: stride-writer FILE PHASE STRIDE COUNT BLOCK THREADS");
        std::process::exit(2);
    }
    let num = |i: usize| {
        a[i].parse::<u64>()
            .unwrap_or_else(|_| panic!("argument {i} is not a number: {}", a[i]))
    };
    let (phase, stride, count, block, threads) =
        (num(2), num(3), num(4), num(5) as usize, num(6).max(1));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&a[1])
        .expect("open FILE with O_DIRECT");
    assert!(block > 0, "BLOCK must be positive");
    // O_DIRECT wants a buffer aligned to the logical block size: 4096 covers every disk.
    let layout = std::alloc::Layout::from_size_align(block, 4096).expect("block size");
    // SAFETY: the layout's size is non-zero, as alloc_zeroed requires.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null(), "out of memory");
    // SAFETY: ptr is non-null, points to `block` zeroed (so initialised) bytes that are never
    // freed or written through another pointer.
    let buf = unsafe { std::slice::from_raw_parts(ptr, block) };
    std::thread::scope(|sc| {
        for t in 0..threads {
            let f = &f;
            sc.spawn(move || {
                for i in (t..count).step_by(threads as usize) {
                    let off = (i * stride + phase) * block as u64;
                    f.write_all_at(buf, off)
                        .unwrap_or_else(|e| panic!("pwrite at {off}: {e}"));
                }
            });
        }
    });
}
