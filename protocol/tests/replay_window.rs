//! Property tests of the replay window (PROTOCOL.md section 3) against a model that remembers
//! every seq: in any order, each seq is accepted at most once, and nothing unseen inside the
//! window (above H-1024) is refused; and seqs at the ends of the range. How the sidecar drives
//! the window is tested in `sidecar/tests/replay_order.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::collections::HashSet;

use identity_protocol::envelope::MAX_SEQ;
use identity_protocol::replay::{ReplayWindow, WINDOW};
use proptest::prelude::*;

/// The specification, literally: remember everything.
#[derive(Default)]
struct Model {
    highest: u64,
    seen: HashSet<u64>,
}

impl Model {
    fn acceptable(&self, seq: u64) -> bool {
        !self.seen.contains(&seq) && (seq > self.highest || self.highest - seq < WINDOW)
    }

    fn accept(&mut self, seq: u64) -> bool {
        let fresh = self.acceptable(seq);
        if fresh {
            self.seen.insert(seq);
            self.highest = self.highest.max(seq);
        }
        fresh
    }
}

/// Seqs that cluster around the window's edges: small steps, jumps of about the window's size,
/// and far jumps.
fn seqs() -> impl Strategy<Value = Vec<u64>> {
    let step = prop_oneof![
        4 => 0u64..8,
        2 => 1000u64..1100,
        1 => 0u64..5000,
        1 => 60u64..70,
    ];
    (
        1u64..3000,
        prop::collection::vec((step, any::<bool>()), 1..400),
    )
        .prop_map(|(start, steps)| {
            let mut at = start;
            steps
                .into_iter()
                .map(|(d, back)| {
                    at = if back {
                        at.saturating_sub(d).max(1)
                    } else {
                        at + d
                    };
                    at
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn window_agrees_with_the_model(seqs in seqs()) {
        let mut window = ReplayWindow::new();
        let mut model = Model::default();
        for seq in seqs {
            let checked = window.check(seq).is_ok();
            let accepted = window.accept(seq).is_ok();
            prop_assert_eq!(checked, accepted, "check and accept disagree on {}", seq);
            prop_assert_eq!(accepted, model.accept(seq), "seq {}", seq);
            prop_assert_eq!(window.highest(), model.highest);
        }
    }

    #[test]
    fn each_seq_is_accepted_at_most_once(seqs in prop::collection::vec(1u64..2048, 1..3000)) {
        let mut window = ReplayWindow::new();
        let mut accepted = HashSet::new();
        for seq in seqs {
            if window.accept(seq).is_ok() {
                prop_assert!(accepted.insert(seq), "seq {} accepted twice", seq);
            }
        }
    }

    /// Any permutation of a block of WINDOW consecutive seqs is accepted whole.
    #[test]
    fn any_order_inside_the_window_is_accepted(
        start in 1u64..1_000_000,
        order in Just((0..WINDOW).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut window = ReplayWindow::new();
        for offset in order {
            prop_assert!(window.accept(start + offset).is_ok());
        }
        for offset in 0..WINDOW {
            prop_assert!(window.check(start + offset).is_err());
        }
    }
}

/// Seqs at the ends of the range and of u64 (the envelope refuses 0 and above 2^53-1 before the
/// window; the window itself must still not overflow on them).
fn extreme_seq() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        MAX_SEQ - 2048..=MAX_SEQ,
        Just(u64::MAX),
        u64::MAX - 2048..=u64::MAX,
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `check` is pure: it never changes the window, whatever the seq.
    #[test]
    fn check_changes_nothing(seqs in seqs(), probes in prop::collection::vec(extreme_seq(), 1..50)) {
        let mut window = ReplayWindow::new();
        for seq in seqs {
            let _ = window.accept(seq);
        }
        let before = window.clone();
        for probe in probes {
            let _ = window.check(probe);
            prop_assert_eq!(&window, &before);
        }
    }

    /// No overflow or wrong answer at the ends of the range.
    #[test]
    fn extreme_seqs_agree_with_the_model(seqs in prop::collection::vec(extreme_seq(), 1..200)) {
        let mut window = ReplayWindow::new();
        let mut model = Model::default();
        for seq in seqs {
            prop_assert_eq!(window.accept(seq).is_ok(), model.accept(seq), "seq {}", seq);
            prop_assert_eq!(window.highest(), model.highest);
        }
    }
}
