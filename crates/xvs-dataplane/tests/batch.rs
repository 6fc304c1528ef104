//! Batched map operations against maps made for the test (needs root, as the other tests).

use aya::maps::{Array, HashMap, IterableMap, MapData, PerCpuArray, PerCpuValues};
use xvs_dataplane::batch;

#[test]
fn arrays_are_written_and_read_in_batches() {
    let mut a: Array<MapData, u64> = Array::create(10_000, 0).expect("create an array (root?)");
    let entries: Vec<(u32, u64)> = (0..9_000u32).map(|i| (i, u64::from(i) * 3 + 1)).collect();
    batch::update(a.map(), &entries).unwrap();
    // More than one chunk, and past the end of the array: what exists is returned.
    let back = batch::lookup_array::<u64>(a.map(), 20_000).unwrap();
    assert_eq!(back.len(), 10_000);
    assert!((0..9_000).all(|i| back[i] == i as u64 * 3 + 1));
    assert!(back[9_000..].iter().all(|v| *v == 0));
    a.set(5, 77, 0).unwrap();
    assert_eq!(batch::lookup_array::<u64>(a.map(), 6).unwrap()[5], 77);
    assert!(batch::lookup_array::<u64>(a.map(), 0).unwrap().is_empty());
    // From a slot on, across a chunk's end, and cut at the array's end.
    let mid = batch::lookup_array_from::<u64>(a.map(), 4_000, 5_000).unwrap();
    assert_eq!(mid.len(), 5_000);
    assert!((0..5_000).all(|i| mid[i] == (4_000 + i as u64) * 3 + 1));
    assert_eq!(batch::lookup_array_from::<u64>(a.map(), 9_998, 10).unwrap(), vec![0, 0]);
}

#[test]
fn per_cpu_arrays_keep_every_cpus_value() {
    let cpus = batch::possible_cpus();
    let mut a: PerCpuArray<MapData, u32> = PerCpuArray::create(5_000, 0).expect("create (root?)");
    let v: Vec<u32> = (0..cpus as u32).map(|c| 100 + c).collect();
    batch::update_percpu(a.map(), cpus, &[(4_999, &v[..]), (3, &v[..])]).unwrap();
    a.set(7, PerCpuValues::try_from(vec![9u32; cpus]).unwrap(), 0).unwrap();
    let back = batch::lookup_percpu_array::<u32>(a.map(), cpus, 5_000).unwrap();
    assert_eq!(back.len(), 5_000);
    assert_eq!(back[3], v);
    assert_eq!(back[4_999], v);
    assert_eq!(back[7], vec![9; cpus]);
    assert_eq!(back[0], vec![0; cpus]);
}

#[test]
fn hash_maps_take_batches_and_a_full_map_says_so() {
    let h: HashMap<MapData, [u32; 2], u64> = HashMap::create(100, 0).expect("create (root?)");
    let entries: Vec<([u32; 2], u64)> = (0..100u32).map(|i| ([i, !i], u64::from(i))).collect();
    batch::update(h.map(), &entries).unwrap();
    assert_eq!(h.get(&[42, !42], 0).unwrap(), 42);
    assert!(batch::update(h.map(), &[([1000, 0], 1)]).is_err(), "the map is full");
}

#[test]
fn hash_maps_are_read_whole_in_batches() {
    let mut h: HashMap<MapData, [u32; 4], [u64; 3]> = HashMap::create(20_000, 0).expect("create (root?)");
    assert!(batch::lookup_hash::<[u32; 4], [u64; 3]>(h.map()).unwrap().is_empty(), "an empty map");
    // More than four batches' worth.
    let entries: Vec<([u32; 4], [u64; 3])> =
        (0..17_000u32).map(|i| ([i, !i, i ^ 0x5a5a, 7], [u64::from(i), 2, u64::from(i) << 20])).collect();
    batch::update(h.map(), &entries).unwrap();
    let mut back = batch::lookup_hash::<[u32; 4], [u64; 3]>(h.map()).unwrap();
    back.sort();
    let mut want = entries.clone();
    want.sort();
    assert_eq!(back, want, "every entry once, with its value");
    h.remove(&entries[5].0).unwrap();
    assert_eq!(batch::hash_entries(&h).len(), 16_999);
}
