//! Notification policy: which of an alerting operator's alerts are sent
//! on to people. Any alerting operator takes these options (split off its
//! entry, as the wording is), and the operator is wrapped: it raises its
//! episodes as before, knowing nothing of the policy.
//!
//! ```yaml
//! too_warm:
//!   type: threshold
//!   ...
//!   renotify_every: 30m                  # a still-firing alert is sent again
//!   cooldown: 10m                        # no new episode within 10m of the last resolve sent
//!   flapping: {changes: 6, window: 1h}   # more than 6 changes in an hour: flapping
//!   inhibit_when: door_open              # nothing sent while door_open fires for the key
//! ```
//!
//! An alert the policy holds back still goes to the sinks, marked
//! `"suppressed": "cooldown"` (or `"flapping"`, `"inhibited by door_open"`):
//! files and stdout keep the record; the `webhook` sink does not send it.
//! Times are the alerts' event times and, for `renotify_every`, the end of
//! flapping and the end of an inhibition, the timer clock (event time in a
//! replay, the wall clock live).
//!
//! Inhibition reads which rules fire for which keys from a [`Firing`]
//! board the whole pipeline shares: every rule some `inhibit_when` names
//! writes to it. A key lives on one worker, so its entries change in
//! event order; the inhibiting rule must come before the inhibited one in
//! the pipeline for a reading that fires both to inhibit.

use super::{Emitter, KeyedOperator, Output};
use crate::config::Duration;
use crate::config::Spanned;
use crate::event::{Alert, AlertState, Key, Severity, Value};
use crate::state::codec::{self, CodecError};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// The detail that marks an alert not to be sent.
pub const SUPPRESSED: &str = "suppressed";

/// The options, all off by default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Send a still-firing alert again this often (same `alert_id`, with
    /// a `notification` count).
    renotify_every: Option<Duration>,
    /// Hold back an episode that starts within this of the last resolve
    /// sent, and its resolve.
    cooldown: Option<Duration>,
    flapping: Option<Flapping>,
    /// Hold back this rule's alerts for a key while this rule fires for it.
    inhibit_when: Option<Spanned<String>>,
}

/// Which rules that inhibit others fire for which keys, across the
/// pipeline's workers.
#[derive(Debug, Default)]
pub struct Firing {
    /// The rules some `inhibit_when` names.
    tracked: HashSet<String>,
    firing: Mutex<HashSet<(Arc<str>, Key)>>,
}

impl Firing {
    /// A board for the rules `inhibitors`.
    pub fn tracking<'a>(inhibitors: impl Iterator<Item = &'a str>) -> Arc<Firing> {
        Arc::new(Firing {
            tracked: inhibitors.map(str::to_string).collect(),
            firing: Mutex::default(),
        })
    }

    fn set(&self, rule: &Arc<str>, key: &Key, firing: bool) {
        let mut board = self.firing.lock().unwrap_or_else(|e| e.into_inner());
        match firing {
            true => board.insert((rule.clone(), key.clone())),
            false => board.remove(&(rule.clone(), key.clone())),
        };
    }

    fn fires(&self, rule: &Arc<str>, key: &Key) -> bool {
        let board = self.firing.lock().unwrap_or_else(|e| e.into_inner());
        board.contains(&(rule.clone(), key.clone()))
    }
}

/// An episode that changes state more than `changes` times within
/// `window` is flapping: the alert that crosses is sent, marked
/// `"flapping": true`, then nothing until no change has come for `window`;
/// then the state it settled in is sent, if it is not the last one sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flapping {
    changes: usize,
    window: Duration,
}

/// The keys of [`Policy`].
pub const POLICY_KEYS: &[&str] = &["renotify_every", "cooldown", "flapping", "inhibit_when"];

impl Policy {
    fn is_off(&self) -> bool {
        self.renotify_every.is_none()
            && self.cooldown.is_none()
            && self.flapping.is_none()
            && self.inhibit_when.is_none()
    }

    pub fn inhibited_by(&self) -> Option<&Spanned<String>> {
        self.inhibit_when.as_ref()
    }

    /// `inner`, under this policy; unchanged when the policy is off and
    /// no other rule's `inhibit_when` names this one.
    pub fn wrap(
        &self,
        rule: &str,
        firing: &Arc<Firing>,
        inner: Box<dyn KeyedOperator>,
    ) -> Box<dyn KeyedOperator> {
        let tracked = firing.tracked.contains(rule);
        if self.is_off() && !tracked {
            return inner;
        }
        Box::new(Notifying {
            inner,
            rule: rule.into(),
            renotify: self.renotify_every.map(Duration::ms),
            cooldown: self.cooldown.map(Duration::ms),
            flapping: self.flapping.as_ref().map(|f| (f.changes, f.window.ms())),
            inhibit_when: self.inhibit_when.as_ref().map(|r| r.value.as_str().into()),
            board: tracked.then(|| firing.clone()),
            firing: firing.clone(),
            states: Vec::new(),
        })
    }
}

struct Notifying {
    inner: Box<dyn KeyedOperator>,
    rule: Arc<str>,
    renotify: Option<i64>,
    cooldown: Option<i64>,
    /// (changes, window ms).
    flapping: Option<(usize, i64)>,
    inhibit_when: Option<Arc<str>>,
    /// Where this rule says for which keys it fires, if another's
    /// `inhibit_when` names it.
    board: Option<Arc<Firing>>,
    /// Where the inhibiting rule's firing is read.
    firing: Arc<Firing>,
    states: Vec<State>,
}

/// An alert as the policy keeps it, to send again.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Kept {
    firing: bool,
    severity: Severity,
    event_time: i64,
    episode_start: i64,
    value: f64,
    message: String,
}

/// What the policy remembers of one key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The firing alert last sent, while its episode lasts: when it was
    /// sent (timer clock) and how many times.
    sent_firing: Option<(Kept, i64, u32)>,
    /// Event time of the last resolve sent.
    last_resolve_sent: Option<i64>,
    /// The episode held back by the cooldown, by its start.
    cooling: Option<i64>,
    /// Event times of the recent changes, for flapping.
    changes: VecDeque<i64>,
    /// Flapping since: the last change's time, and the last alert raised.
    flapping: Option<(i64, Kept)>,
    /// Whether the last alert sent was a firing one.
    last_sent_firing: bool,
    /// The firing alert held back by an inhibition, to send if the
    /// episode outlasts it.
    inhibited: Option<Kept>,
    /// The key, while it fires, for a rule that inhibits others: its entry
    /// on the board comes back with a restored checkpoint.
    firing_key: Option<Key>,
}

impl Kept {
    fn of(alert: &Alert) -> Kept {
        Kept {
            firing: alert.state == AlertState::Firing,
            severity: alert.severity,
            event_time: alert.event_time,
            episode_start: alert.episode_start,
            value: alert.value,
            message: alert.message.clone(),
        }
    }

    fn alert(&self, rule: &Arc<str>, key: &Key, details: Vec<(&'static str, Value)>) -> Alert {
        Alert {
            rule: rule.clone(),
            key: key.clone(),
            state: match self.firing {
                true => AlertState::Firing,
                false => AlertState::Resolved,
            },
            severity: self.severity,
            event_time: self.event_time,
            episode_start: self.episode_start,
            value: self.value,
            message: self.message.clone(),
            previous: None,
            details,
        }
    }
}

fn suppress(alert: &mut Alert, why: &str) {
    alert.details.push((SUPPRESSED, Value::Str(why.into())));
}

/// Holds `alert` back if `by` (the inhibiting rule, and where its firing
/// is read) fires for its key; true if it did.
fn inhibited(by: Option<(&Arc<str>, &Firing)>, state: &mut State, alert: &mut Alert) -> bool {
    let Some((rule, firing)) = by else {
        return false;
    };
    let held = match alert.state {
        AlertState::Firing => firing.fires(rule, &alert.key),
        // The resolve of an episode whose firing was never sent.
        AlertState::Resolved => {
            (state.inhibited.take()).is_some_and(|kept| kept.episode_start == alert.episode_start)
        }
    };
    if held {
        if alert.state == AlertState::Firing {
            state.inhibited = Some(Kept::of(alert));
        }
        suppress(alert, &format!("inhibited by {rule}"));
    }
    held
}

impl Notifying {
    /// Judges each alert the operator raised in `out`.
    fn judge(&mut self, slot: usize, out: &mut Emitter) {
        for output in &mut out.outputs {
            if let Output::Alert(alert) = output {
                let state = super::state_of(&mut self.states, slot);
                let firing = alert.state == AlertState::Firing;
                if let Some(board) = &self.board {
                    board.set(&self.rule, &alert.key, firing);
                    state.firing_key = firing.then(|| alert.key.clone());
                }
                let by = (self.inhibit_when.as_ref()).map(|rule| (rule, self.firing.as_ref()));
                if !inhibited(by, state, alert) {
                    judge(state, alert, self.cooldown, self.flapping);
                }
            }
        }
    }

    /// Sends the firing alert an inhibition held back, once the
    /// inhibiting rule has resolved.
    fn released(&mut self, slot: usize, key: &Key, now: i64, out: &mut Emitter) {
        let Some(by) = &self.inhibit_when else {
            return;
        };
        let state = super::state_of(&mut self.states, slot);
        if state.inhibited.is_none() || self.firing.fires(by, key) {
            return;
        }
        if let Some(kept) = state.inhibited.take() {
            let mut alert = kept.alert(&self.rule, key, Vec::new());
            judge(state, &mut alert, self.cooldown, self.flapping);
            if let Some((_, sent, _)) = &mut state.sent_firing {
                *sent = now;
            }
            out.alert(alert);
        }
    }
}

/// Decides whether `alert` is sent, marking it suppressed if not.
fn judge(state: &mut State, alert: &mut Alert, cooldown: Option<i64>, flap: Option<(usize, i64)>) {
    let firing = alert.state == AlertState::Firing;
    if let Some((changes, window)) = flap {
        state.changes.push_back(alert.event_time);
        while state
            .changes
            .front()
            .is_some_and(|&t| t < alert.event_time - window)
        {
            state.changes.pop_front();
        }
        if let Some((since, last)) = &mut state.flapping {
            (*since, *last) = (alert.event_time, Kept::of(alert));
            state.sent_firing = None;
            return suppress(alert, "flapping");
        }
        if state.changes.len() > changes {
            state.flapping = Some((alert.event_time, Kept::of(alert)));
            alert.details.push(("flapping", Value::Bool(true)));
        }
    }
    let cooled = match firing {
        true => cooldown.is_some_and(|c| {
            (state.last_resolve_sent).is_some_and(|r| alert.episode_start - r < c)
        }),
        false => state.cooling == Some(alert.episode_start),
    };
    if cooled {
        state.cooling = firing.then_some(alert.episode_start);
        return suppress(alert, "cooldown");
    }
    state.cooling = None;
    state.last_sent_firing = firing;
    match firing {
        true => state.sent_firing = Some((Kept::of(alert), alert.event_time, 1)),
        false => {
            state.sent_firing = None;
            state.last_resolve_sent = Some(alert.event_time);
        }
    }
}

impl KeyedOperator for Notifying {
    fn on_event(&mut self, slot: usize, event: &crate::event::Event, out: &mut Emitter) {
        self.inner.on_event(slot, event, out);
        self.judge(slot, out);
        // On events too, not only on ticks: a replay then releases at the
        // same reading however its events are batched.
        self.released(slot, &event.key, event.time, out);
    }

    fn on_end(&mut self, slot: usize, key: &Key, out: &mut Emitter) {
        self.inner.on_end(slot, key, out);
        self.judge(slot, out);
    }

    /// Only when something waits on the clock: a ticking operator costs
    /// a pass over every key each second, and a look at its state each
    /// checkpoint.
    fn ticks(&self) -> bool {
        self.inner.ticks()
            || self.renotify.is_some()
            || self.flapping.is_some()
            || self.inhibit_when.is_some()
    }

    fn on_tick(&mut self, slot: usize, key: &Key, now: i64, out: &mut Emitter) {
        if self.inner.ticks() {
            self.inner.on_tick(slot, key, now, out);
            self.judge(slot, out);
        }
        self.released(slot, key, now, out);
        let state = super::state_of(&mut self.states, slot);
        if let (Some((_, window)), Some((since, last))) = (self.flapping, &state.flapping)
            && now - since >= window
        {
            // Settled: the state it is in, if that is not what was sent.
            if last.firing != state.last_sent_firing {
                let settled = last.alert(&self.rule, key, vec![("flapping", Value::Bool(false))]);
                state.last_sent_firing = last.firing;
                if last.firing {
                    state.sent_firing = Some((last.clone(), now, 1));
                }
                out.alert(settled);
            }
            state.flapping = None;
            state.changes.clear();
        }
        if let (Some(every), Some((kept, sent, count))) = (self.renotify, &mut state.sent_firing)
            && now - *sent >= every
        {
            *sent = now;
            *count += 1;
            let details = vec![("notification", Value::Num(f64::from(*count)))];
            out.alert(kept.alert(&self.rule, key, details));
        }
    }

    fn fork(&self) -> Box<dyn KeyedOperator> {
        Box::new(Notifying {
            inner: self.inner.fork(),
            rule: self.rule.clone(),
            renotify: self.renotify,
            cooldown: self.cooldown,
            flapping: self.flapping,
            inhibit_when: self.inhibit_when.clone(),
            board: self.board.clone(),
            firing: self.firing.clone(),
            states: Vec::new(),
        })
    }

    fn save(&self, slot: usize, buf: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut inner = Vec::new();
        self.inner.save(slot, &mut inner)?;
        let none = State::default();
        codec::encode_into(&(inner, self.states.get(slot).unwrap_or(&none)), buf)
    }

    fn restore(&mut self, slot: usize, bytes: &[u8]) -> Result<(), CodecError> {
        let (inner, state): (Vec<u8>, State) = codec::decode(bytes)?;
        self.inner.restore(slot, &inner)?;
        if let (Some(board), Some(key)) = (&self.board, &state.firing_key) {
            board.set(&self.rule, key, true);
        }
        *super::state_of(&mut self.states, slot) = state;
        Ok(())
    }

    fn remove(&mut self, slot: usize, last: usize) {
        let forgotten = self.states.get_mut(slot).and_then(|s| s.firing_key.take());
        if let (Some(board), Some(key)) = (&self.board, forgotten) {
            board.set(&self.rule, &key, false);
        }
        self.inner.remove(slot, last);
        super::state_of(&mut self.states, last);
        self.states.swap_remove(slot);
        self.states.truncate(last);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, MINUTE, alerts};
    use crate::event::{Alert, AlertState, Value};

    /// A threshold above 4 under `policy`.
    fn rule(policy: &str) -> Harness {
        Harness::new("threshold", &format!("field: temp\nabove: 4\n{policy}"))
    }

    fn detail<'a>(alert: &'a Alert, name: &str) -> Option<&'a Value> {
        (alert.details.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// (state, minute, suppressed why) of what a reading at `minute` raised.
    fn at(h: &mut Harness, minute: i64, temp: f64) -> Vec<(AlertState, i64, Option<String>)> {
        let raised = h.feed("t1", minute * MINUTE, &[("temp", temp)]);
        (raised.iter())
            .map(|a| {
                let why = detail(a, super::SUPPRESSED).map(|v| format!("{v:?}"));
                (a.state, a.event_time / MINUTE, why)
            })
            .collect()
    }

    #[test]
    fn a_firing_alert_is_sent_again_every_renotify_every_with_the_same_id_until_it_resolves() {
        let mut h = rule("renotify_every: 30m\n");
        let fired = h.feed("t1", 0, &[("temp", 5.0)]);
        assert_eq!(fired.len(), 1);
        // Not yet due at 29 minutes; due at 30, then again at 60.
        assert!(alerts(h.tick("t1", 29 * MINUTE)).is_empty());
        let again = alerts(h.tick("t1", 30 * MINUTE));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id("p"), fired[0].id("p"));
        assert_eq!(detail(&again[0], "notification"), Some(&Value::Num(2.0)));
        assert!(alerts(h.tick("t1", 45 * MINUTE)).is_empty());
        let third = alerts(h.tick("t1", 60 * MINUTE));
        assert_eq!(detail(&third[0], "notification"), Some(&Value::Num(3.0)));
        // Resolved: no more.
        assert_eq!(h.feed("t1", 61 * MINUTE, &[("temp", 2.0)]).len(), 1);
        assert!(alerts(h.tick("t1", 200 * MINUTE)).is_empty());
    }

    #[test]
    fn an_episode_within_the_cooldown_of_the_last_resolve_sent_is_held_back_with_its_resolve() {
        let mut h = rule("cooldown: 10m\n");
        let cooldown = Some(format!("{:?}", Value::Str("cooldown".into())));
        assert_eq!(at(&mut h, 0, 5.0), [(AlertState::Firing, 0, None)]);
        assert_eq!(at(&mut h, 1, 2.0), [(AlertState::Resolved, 1, None)]);
        // 5 minutes after the resolve: recorded, not sent; nor its resolve.
        assert_eq!(
            at(&mut h, 6, 5.0),
            [(AlertState::Firing, 6, cooldown.clone())]
        );
        assert_eq!(
            at(&mut h, 7, 2.0),
            [(AlertState::Resolved, 7, cooldown.clone())]
        );
        // The cooldown runs from the last resolve sent (minute 1).
        assert_eq!(at(&mut h, 10, 5.0), [(AlertState::Firing, 10, cooldown)]);
        assert_eq!(at(&mut h, 11, 2.0).len(), 1);
        assert_eq!(at(&mut h, 12, 5.0), [(AlertState::Firing, 12, None)]);
    }

    #[test]
    fn a_flapping_episode_is_sent_once_marked_then_quiet_until_it_settles() {
        let mut h = rule("flapping: {changes: 3, window: 10m}\n");
        let flapping = Some(format!("{:?}", Value::Str("flapping".into())));
        // Changes at minutes 0, 1, 2: not yet more than 3.
        for (minute, temp) in [(0, 5.0), (1, 2.0), (2, 5.0)] {
            assert_eq!(at(&mut h, minute, temp)[0].2, None, "minute {minute}");
        }
        // The fourth change is sent, marked flapping.
        let raised = h.feed("t1", 3 * MINUTE, &[("temp", 2.0)]);
        assert_eq!(detail(&raised[0], "flapping"), Some(&Value::Bool(true)));
        assert_eq!(detail(&raised[0], super::SUPPRESSED), None);
        // Then held back while it flaps, the last change at minute 5.
        assert_eq!(at(&mut h, 4, 5.0)[0].2, flapping);
        assert_eq!(at(&mut h, 5, 2.0)[0].2, flapping);
        assert_eq!(at(&mut h, 6, 5.0)[0].2, flapping);
        // Quiet for the window since minute 6: the state it settled in
        // (firing) differs from the last sent (resolved), so it is sent.
        assert!(alerts(h.tick("t1", 15 * MINUTE)).is_empty());
        let settled = alerts(h.tick("t1", 16 * MINUTE));
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].state, AlertState::Firing);
        assert_eq!(settled[0].event_time, 6 * MINUTE);
        assert_eq!(detail(&settled[0], "flapping"), Some(&Value::Bool(false)));
        // Back to normal: the next change is sent as usual.
        assert_eq!(at(&mut h, 30, 2.0), [(AlertState::Resolved, 30, None)]);
    }

    #[test]
    fn the_policy_state_survives_a_checkpoint() {
        let mut h = rule("renotify_every: 30m\n");
        h.feed("t1", 0, &[("temp", 5.0)]);
        let saved = h.save();
        let mut restored = rule("renotify_every: 30m\n");
        restored.restore(&saved);
        let again = alerts(restored.tick("t1", 30 * MINUTE));
        assert_eq!(detail(&again[0], "notification"), Some(&Value::Num(2.0)));
        // The threshold's own episode came back too: this resolves it.
        assert_eq!(restored.feed("t1", 31 * MINUTE, &[("temp", 2.0)]).len(), 1);
    }

    #[test]
    fn policy_options_are_checked_and_typos_get_a_hint() {
        let typo = Harness::try_new("threshold", "field: temp\nabove: 4\nrenotify_evry: 30m\n");
        let messages: Vec<String> = typo
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(
            messages,
            ["unknown field `renotify_evry`, did you mean `renotify_every`?"]
        );
    }
}
