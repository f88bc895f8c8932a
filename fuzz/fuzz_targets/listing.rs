//! Index listings, maps, pages and stored content (entries, deltas,
//! listings) on arbitrary bytes: no panic, no allocation from a hostile
//! size, and a listing that parses is written back to the same records.
#![no_main]

use dare_container::content;
use dare_container::frame::{Frames, read_header};
use dare_container::header::{Header, listing_bytes, parse_listing};
use dare_container::map::{TileMap, decode_page};
use libfuzzer_sys::fuzz_target;

/// Contents and delta bases this target decodes in memory at most.
const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // A file count, then a listing.
    if let Some((&n, rest)) = data.split_first() {
        if let Ok(list) = parse_listing(rest, u64::from(n)) {
            let again = listing_bytes(&list).expect("a parsed listing is valid");
            assert_eq!(parse_listing(&again, u64::from(n)).expect("a written listing parses"), list);
        }
        let _ = decode_page(rest);
    }
    // A tree size, then a map.
    if data.len() >= 8 {
        let size = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
        if let Ok(map) = TileMap::decode(size, &data[8..]) {
            assert_eq!(map.encode().expect("a decoded map encodes"), &data[8..]);
        }
    }
    // Frames: decode what each entry, delta and index holds.
    let len = data.len() as u64;
    for info in Frames::new(data, 0, len).flatten() {
        let Ok(h) = read_header(data, &info) else { continue };
        match Header::parse(&h) {
            Ok(Header::Entry(e)) => {
                let _ = content::check_entry(data, &info, &e);
                let _ = content::entry_bytes(data, &info, &e, LIMIT);
            }
            Ok(Header::Delta(d)) => {
                let _ = content::check_delta_stored(data, &info, &d);
                if d.base_size <= LIMIT.min(len) && d.size <= LIMIT {
                    let base = &data[..d.base_size as usize];
                    let _ = content::delta_content(data, &info, &d, base, std::io::sink());
                }
            }
            Ok(Header::Index(ix)) => {
                let _ = content::listing(data, &info, &ix);
            }
            _ => {}
        }
    }
});
