//! Batched map operations (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_UPDATE_BATCH`; Linux 5.6). aya 0.14
//! has none, and at 100k services one system call per element is most of what publishing a
//! configuration or reading its counters back costs: a batch moves thousands of elements in one.
//!
//! Only what xvs needs: arrays (plain and per-CPU) and hash maps, fixed-size `Pod` keys and
//! values. A caller that gets an error falls back to one call per element (a kernel without
//! batches says `EINVAL` or `ENOTSUPP`).

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{MapData, MapError};
use aya::sys::SyscallError;
use aya::Pod;

/// Elements per system call: the kernel copies each batch through a buffer of its own.
const CHUNK: usize = 4096;

use aya_obj::generated::bpf_cmd::{self, BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH};

/// `union bpf_attr`'s `batch` member, as the kernel's headers give it.
type BatchAttr = aya_obj::generated::bpf_attr__bindgen_ty_3;

fn attr(map: &MapData) -> BatchAttr {
    BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: 0,
        values: 0,
        count: 0,
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    }
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut BatchAttr, call: &'static str) -> Result<(), MapError> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix of the size given; the pointers it
    // holds point into buffers the caller keeps alive and sized for `count` elements.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(MapError::SyscallError(SyscallError { call, io_error: std::io::Error::last_os_error() }));
    }
    Ok(())
}

/// Writes `keys[i]` ← the `i`-th value of `values`, where a value is `stride` bytes (a per-CPU
/// map's value is one per possible CPU). Stops at the first element the kernel refuses.
fn update_raw<K: Pod>(map: &MapData, keys: &[K], values: &[u8], stride: usize) -> Result<(), MapError> {
    debug_assert_eq!(values.len(), keys.len() * stride);
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK * stride)) {
        let mut attr =
            BatchAttr { keys: k.as_ptr() as u64, values: v.as_ptr() as u64, count: k.len() as u32, ..attr(map) };
        sys_bpf(BPF_MAP_UPDATE_BATCH, &mut attr, "bpf_map_update_batch")?;
    }
    Ok(())
}

fn bytes_of<V: Pod>(v: &[V]) -> &[u8] {
    // SAFETY: `Pod` values are plain bytes with no padding the kernel could not read.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Writes every `(key, value)` of `entries` into `map` (an array or a hash map whose value is
/// `V`), in order.
pub fn update<K: Pod, V: Pod>(map: &MapData, entries: &[(K, V)]) -> Result<(), MapError> {
    if entries.is_empty() {
        return Ok(());
    }
    let keys: Vec<K> = entries.iter().map(|(k, _)| *k).collect();
    let values: Vec<V> = entries.iter().map(|(_, v)| *v).collect();
    update_raw(map, &keys, bytes_of(&values), std::mem::size_of::<V>())
}

/// Writes every `(slot, values)` of `entries` into per-CPU array `map`: `values` holds one `V`
/// per possible CPU (`cpus` of them), as [`lookup_percpu_array`] returns them.
pub fn update_percpu<V: Pod>(map: &MapData, cpus: usize, entries: &[(u32, &[V])]) -> Result<(), MapError> {
    if entries.is_empty() {
        return Ok(());
    }
    let stride = percpu_stride::<V>() * cpus;
    let keys: Vec<u32> = entries.iter().map(|(k, _)| *k).collect();
    let mut values = vec![0u8; stride * entries.len()];
    for (i, (_, v)) in entries.iter().enumerate() {
        assert_eq!(v.len(), cpus, "one value per possible CPU");
        for (c, one) in v.iter().enumerate() {
            let at = i * stride + c * percpu_stride::<V>();
            values[at..at + std::mem::size_of::<V>()].copy_from_slice(bytes_of(std::slice::from_ref(one)));
        }
    }
    update_raw(map, &keys, &values, stride)
}

/// The kernel rounds a per-CPU value up to 8 bytes.
fn percpu_stride<V>() -> usize {
    std::mem::size_of::<V>().div_ceil(8) * 8
}

/// Reads slots `start..start + n` of array `map` (value `V`, or for a per-CPU array `cpus`
/// values of `V` each): the raw bytes, `stride` a slot.
fn lookup_raw(map: &MapData, start: u32, n: u32, stride: usize) -> Result<Vec<u8>, MapError> {
    let n = n as usize;
    let mut out = vec![0u8; n * stride];
    let mut keys = vec![0u32; CHUNK.min(n.max(1))];
    // The kernel starts after the key `in_batch` names (at slot 0 without one).
    let mut next: u32 = start.wrapping_sub(1);
    let mut done = 0usize;
    while done < n {
        let want = CHUNK.min(n - done);
        let prev = next;
        let mut attr = BatchAttr {
            in_batch: if done == 0 && start == 0 { 0 } else { &prev as *const u32 as u64 },
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: out[done * stride..].as_mut_ptr() as u64,
            count: want as u32,
            ..attr(map)
        };
        match sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr, "bpf_map_lookup_batch") {
            Ok(()) => {}
            // The end of the array: what was read is in `count`.
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                done += attr.count as usize;
                break;
            }
            Err(e) => return Err(e),
        }
        if attr.count == 0 {
            break;
        }
        done += attr.count as usize;
    }
    out.truncate(done * stride);
    Ok(out)
}

/// Slots `0..n` of array `map` (fewer if the array is smaller), one system call per 4096.
pub fn lookup_array<V: Pod>(map: &MapData, n: u32) -> Result<Vec<V>, MapError> {
    lookup_array_from(map, 0, n)
}

/// Slots `start..start + n` of array `map` (fewer if the array ends first).
pub fn lookup_array_from<V: Pod>(map: &MapData, start: u32, n: u32) -> Result<Vec<V>, MapError> {
    let size = std::mem::size_of::<V>();
    let raw = lookup_raw(map, start, n, size)?;
    // SAFETY: `V` is `Pod`: any bytes of its size are a valid `V`.
    Ok(raw.chunks_exact(size).map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<V>()) }).collect())
}

/// Slots `0..n` of per-CPU array `map`: for each, the `cpus` values (one per possible CPU).
pub fn lookup_percpu_array<V: Pod>(map: &MapData, cpus: usize, n: u32) -> Result<Vec<Vec<V>>, MapError> {
    let one = percpu_stride::<V>();
    let raw = lookup_raw(map, 0, n, one * cpus)?;
    Ok(raw
        .chunks_exact(one * cpus)
        .map(|slot| {
            // SAFETY: as in `lookup_array`; each CPU's value starts at a multiple of `one`.
            slot.chunks_exact(one).map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<V>()) }).collect()
        })
        .collect())
}

/// Calls `f` with every entry of hash map `map` (key `K`, value `V`), read 4096 a system call
/// (one bucket at least: the kernel copies whole buckets, and resumes at the bucket it names in
/// `out_batch`). Entries added or removed meanwhile may or may not be seen, as with a walk by
/// keys. Returns how many entries `f` was given before an error, with the error.
fn for_each_hash<K: Pod, V: Pod>(map: &MapData, mut f: impl FnMut(K, V)) -> Result<(), (usize, MapError)> {
    let (mut from, mut given) = (None, 0usize);
    let mut read = Vec::with_capacity(CHUNK);
    loop {
        let next = read_hash_from(map, from, CHUNK, &mut read).map_err(|e| (given, e))?;
        given += read.len();
        for (k, v) in read.drain(..) {
            f(k, v);
        }
        match next {
            None => return Ok(()),
            Some(bucket) => from = Some(bucket),
        }
    }
}

/// Reads about `max` entries of hash map `map` into `out`, from bucket `from` (`None`: the
/// first): whole buckets, so a little more than `max` when a bucket would not fit in what is
/// left. Returns the bucket the next read resumes at, or `None` when the table's end was
/// reached. A bucket's position does not move when entries come and go, so a walk of reads
/// visits every entry present throughout it once.
pub fn read_hash_from<K: Pod, V: Pod>(
    map: &MapData,
    from: Option<u32>,
    max: usize,
    out: &mut Vec<(K, V)>,
) -> Result<Option<u32>, MapError> {
    let (ks, vs) = (std::mem::size_of::<K>(), std::mem::size_of::<V>());
    let mut want = max.max(1);
    let mut count = want.min(CHUNK);
    let (mut bucket, mut next) = (from.unwrap_or(0), 0u32);
    let mut first = from.is_none();
    let (mut keys, mut values): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    loop {
        keys.resize(count * ks, 0);
        values.resize(count * vs, 0);
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &bucket as *const u32 as u64 },
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: count as u32,
            ..attr(map)
        };
        let end = match sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr, "bpf_map_lookup_batch") {
            Ok(()) => false,
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => true,
            // The next bucket holds more than `count`: ask for more.
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOSPC) && count < 1 << 20 => {
                count *= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        let got = (attr.count as usize).min(count);
        for i in 0..got {
            // SAFETY: `K` and `V` are `Pod`: any bytes of their size are valid values.
            let k = unsafe { std::ptr::read_unaligned(keys[i * ks..].as_ptr().cast::<K>()) };
            let v = unsafe { std::ptr::read_unaligned(values[i * vs..].as_ptr().cast::<V>()) };
            out.push((k, v));
        }
        if end {
            return Ok(None);
        }
        first = false;
        bucket = next;
        want = want.saturating_sub(got);
        if want == 0 {
            return Ok(Some(bucket));
        }
        count = want.min(CHUNK);
    }
}

/// Every entry of hash map `map`, in batches (see [`each_entry`]).
pub fn lookup_hash<K: Pod, V: Pod>(map: &MapData) -> Result<Vec<(K, V)>, MapError> {
    let mut out = Vec::new();
    for_each_hash(map, |k, v| out.push((k, v))).map_err(|(_, e)| e)?;
    Ok(out)
}

/// Calls `f` with every entry of hash map `map`: in batches, or one key at a time on a kernel
/// without batches for hash maps (its first call fails with `EINVAL` or `ENOTSUPP`). Any other
/// error, or one after entries were given, is returned.
pub fn each_entry<K: Pod, V: Pod>(
    map: &aya::maps::HashMap<MapData, K, V>,
    mut f: impl FnMut(K, V),
) -> Result<(), MapError> {
    use aya::maps::IterableMap;
    match for_each_hash(map.map(), &mut f) {
        Ok(()) => Ok(()),
        Err((0, MapError::SyscallError(e)))
            if matches!(e.io_error.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP | 524)) =>
        {
            for item in map.iter() {
                let (k, v) = item?;
                f(k, v);
            }
            Ok(())
        }
        Err((_, e)) => Err(e),
    }
}

/// Every entry of hash map `map` ([`each_entry`]); for listings, where a table that cannot be
/// read in batches is read key by key, leaving out what cannot be read.
pub fn hash_entries<K: Pod, V: Pod>(map: &aya::maps::HashMap<MapData, K, V>) -> Vec<(K, V)> {
    let mut out = Vec::new();
    if each_entry(map, |k, v| out.push((k, v))).is_err() {
        out = map.iter().flatten().collect();
    }
    out
}

/// The number of possible CPUs: how many values a per-CPU map holds for each key.
pub fn possible_cpus() -> usize {
    aya::util::nr_cpus().map(|n| n.max(1)).unwrap_or(1)
}
