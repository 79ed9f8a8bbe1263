//! An upstream event stream: the SSE parser yields the same events however
//! the bytes are split, and the stream transform (all four format
//! directions, with text collection) never panics on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::providers::wire::{StreamObservations, StreamTransform, Wire};
use ringway::sse::SseParser;

type Event = (Option<Vec<u8>>, Vec<u8>);

fn events(pieces: &[&[u8]]) -> (Vec<Event>, bool) {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for piece in pieces {
        if p.feed(piece, |e| out.push((e.event.map(<[u8]>::to_vec), e.data.to_vec())))
            .is_err()
        {
            return (out, true);
        }
    }
    p.finish(|e| out.push((e.event.map(<[u8]>::to_vec), e.data.to_vec())));
    (out, false)
}

fuzz_target!(|input: (u8, &[u8])| {
    let (step, data) = input;
    let step = usize::from(step.max(1));
    let pieces: Vec<&[u8]> = data.chunks(step).collect();
    let whole = events(&[data]);
    let split = events(&pieces);
    if !whole.1 && !split.1 {
        assert_eq!(whole.0, split.0);
    }
    for from in [Wire::OpenAi, Wire::Anthropic] {
        for to in [Wire::OpenAi, Wire::Anthropic] {
            let mut t = StreamTransform::new(from, to, step % 2 == 0).collecting_text();
            let mut obs = StreamObservations::default();
            let mut out = Vec::new();
            for piece in &pieces {
                if t.feed(piece, &mut out, &mut obs).is_err() {
                    break;
                }
            }
            let _ = t.finish(&mut out, &mut obs);
            t.error_event("x", &mut out);
        }
    }
});
