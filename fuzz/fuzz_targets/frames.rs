//! The frame reader, both walkers, the stream decoder and the header parser
//! on arbitrary bytes: no panic, no allocation from a hostile length, and the
//! stream decoder agrees with the random-access reader.
#![no_main]

use dare_container::frame::{FrameEvent, FrameStream, Frames, FramesBack, read_header};
use dare_container::header::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let mut forward = Vec::new();
    for info in Frames::new(data, 0, len).flatten() {
        if let Ok(h) = read_header(data, &info) {
            let _ = Header::parse(&h);
        }
        forward.push(info);
    }
    for _ in FramesBack::new(data, 0, len) {}
    let mut streamed = Vec::new();
    let mut st = FrameStream::new(0);
    let _ = st.feed::<()>(data, &mut |ev| {
        if let FrameEvent::End(info) = ev {
            streamed.push(info);
        }
        Ok(())
    });
    assert_eq!(streamed[..], forward[..streamed.len().min(forward.len())]);
});
