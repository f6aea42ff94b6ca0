//! The order the tenants of a wave start in, subject to the run's concurrency and the
//! per-host caps. A tenant takes a slot of the run only when its host has room, so a full
//! host holds back only its own tenants. Among the hosts with room, the one with the most
//! work left goes first (its waiting tenants times its mean time per tenant so far, over
//! its cap), so the wave ends when its busiest host ends rather than after a host whose
//! tenants were listed last; within a host, and between hosts with as much work left,
//! tenants start in fleet order. On one host, `plan`'s order is the order tenants start in.
//!
//! With the breaker on ([`Turns::ramp`]), a host none of whose tenants has reached it yet
//! in this run has at most `--host-failures` (K) tenants in flight, not its cap, less one
//! for each of its failed connection attempts so far (so at most K tenants are tried on a
//! dead host in all, however unevenly their attempts fail), until one reaches it: a dead
//! host listed with the most work left otherwise took up to `-j` run slots, each for a
//! connect timeout times its retries, when K failed attempts are all the breaker needs.
//! K at once, not one: the same slot time as one tenant making the K attempts in a row,
//! but the host is cut off after one connect timeout instead of K of them, so a dead host
//! no longer outlasts a short run (`benches/dead_host.rs`). Its other tenants wait in its
//! queue, holding no slot, so other hosts' tenants start meanwhile. A tenant that needs no
//! slot (surveyed at its target) starts whenever no other start is under way, except
//! ahead of a tenant that only the run's concurrency holds back: it keeps its fleet-order
//! place behind that one.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The time per tenant a host is taken to need before any of its tenants finished (and
/// no other host's did either): only the ratio between hosts matters.
const UNKNOWN_MS: u64 = 1_000;

/// The order of the hosts with room: most work left first, then fleet order.
type Rank = (Reverse<u64>, usize);

/// A server's key, one allocation per server shared by every map and turn that names it:
/// on SQLite every tenant is a server of its own, and six copies of its path per tenant
/// were a large part of a 100,000-tenant wave's memory.
type Server = Arc<str>;

/// Who may start next. Tenants wait in fleet order; one start happens at a time, from
/// taking a turn until `Turn::started`, so the start events come out in that order too.
#[derive(Debug)]
pub struct Turns {
    state: Mutex<State>,
    /// One per tenant: woken when it becomes the next to start, so a change wakes one
    /// waiting tenant, not all of them.
    wake: HashMap<usize, Notify>,
}

#[derive(Debug)]
struct State {
    /// Tenants not started yet, by their place in the wave; `None` for one that needs no
    /// connection (already at its target), `Some(server)` for one that needs a slot there.
    waiting: BTreeMap<usize, Option<Server>>,
    /// The waiting tenants that need no connection: they may start whenever no other start
    /// is under way.
    free: BTreeSet<usize>,
    /// The waiting tenants of each server, in fleet order.
    queues: HashMap<Server, BTreeSet<usize>>,
    /// The first waiting tenant of every server below its cap, ranked by the work its
    /// server has left, and its rank per server: the next to start is the first of these
    /// (while the run's concurrency has room) or of `free`, found without looking at every
    /// waiting tenant. A wave of 100,000 tenants behind one full host otherwise cost a scan
    /// of all of them per start.
    ready: BTreeSet<Rank>,
    ready_of: HashMap<Server, Rank>,
    /// The places of `ready`, in fleet order: a tenant that needs no slot does not start
    /// ahead of one of these while only the run's concurrency holds it back.
    ready_places: BTreeSet<usize>,
    /// Per server, the milliseconds its finished tenants held their slot, and how many.
    took: HashMap<Server, (u64, u64)>,
    /// The same over all servers, for a server none of whose tenants finished yet.
    took_all: (u64, u64),
    /// A tenant is between taking its turn and [`Turn::started`].
    starting: bool,
    /// Tenants holding a slot, in all and per server.
    running: usize,
    per_server: HashMap<Server, usize>,
    concurrency: usize,
    caps: HashMap<Server, usize>,
    /// `Some` when a host's cap applies only once one of its tenants reached it (the
    /// servers that did so far); until then it has at most `unproven_cap` in flight.
    proven: Option<HashSet<Server>>,
    unproven_cap: usize,
    /// Per unproven server, its failed connection attempts so far: each takes one from
    /// `unproven_cap`, so a dead host has at most K tenants tried in all, not K failed and
    /// up to K - 1 more in flight when the K-th failure cuts it off.
    misses: HashMap<Server, usize>,
}

impl State {
    fn server_has_room(&self, server: &str) -> bool {
        self.per_server.get(server).copied().unwrap_or(0) < self.cap(server)
    }

    /// `server`'s cap now: its own, or at most `unproven_cap` while it is unproven.
    fn cap(&self, server: &str) -> usize {
        let cap = self.caps.get(server).copied().unwrap_or(1);
        match &self.proven {
            Some(proven) if !proven.contains(server) => {
                let missed = self.misses.get(server).copied().unwrap_or(0);
                cap.min(self.unproven_cap.saturating_sub(missed).max(1))
            }
            _ => cap,
        }
    }

    /// The tenant that starts next, if any may start now.
    fn next(&self) -> Option<usize> {
        if self.starting {
            return None;
        }
        let free = self.free.first().copied();
        let room = self.running < self.concurrency;
        let slotted = room.then(|| self.ready.first().map(|&(_, place)| place)).flatten();
        match (free, slotted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            // With every slot of the run taken, a tenant that needs none keeps its place
            // behind those waiting for one (`-j 1` starts in fleet order), but not behind
            // those a full host holds back.
            (Some(a), None) if !room && self.ready_places.first().is_some_and(|&q| q < a) => None,
            (a, b) => a.or(b),
        }
    }

    /// The work `server` has left, in milliseconds per slot: its waiting tenants times its
    /// mean time per tenant (the run's, or [`UNKNOWN_MS`], until one of its own finished),
    /// over its cap.
    fn work_left(&self, server: &str) -> u64 {
        let waiting = self.queues.get(server).map_or(0, |q| q.len() as u64);
        let mean = |(total, n): (u64, u64)| (n > 0).then(|| total / n);
        let per_tenant = self
            .took
            .get(server)
            .copied()
            .and_then(mean)
            .or_else(|| mean(self.took_all))
            .unwrap_or(UNKNOWN_MS)
            .max(1);
        let cap = self.caps.get(server).copied().unwrap_or(1).max(1) as u64;
        waiting.saturating_mul(per_tenant) / cap
    }

    /// Puts `server`'s first waiting tenant among the ready ones, ranked by the work its
    /// server has left, if the server has room.
    fn refresh(&mut self, server: &Server) {
        if let Some(old) = self.ready_of.remove(server) {
            self.ready.remove(&old);
            self.ready_places.remove(&old.1);
        }
        if !self.server_has_room(server) {
            return;
        }
        if let Some(&head) = self.queues.get(server).and_then(|q| q.first()) {
            let rank = (Reverse(self.work_left(server)), head);
            self.ready.insert(rank);
            self.ready_places.insert(head);
            self.ready_of.insert(server.clone(), rank);
        }
    }

    /// A tenant of `server` held its slot for `ms`.
    fn took(&mut self, server: &Server, ms: u64) {
        let own = self.took.entry(server.clone()).or_insert((0, 0));
        *own = (own.0 + ms, own.1 + 1);
        self.took_all = (self.took_all.0 + ms, self.took_all.1 + 1);
    }

    /// Takes the tenant at `place` out of the waiting ones.
    fn unwait(&mut self, place: usize) -> Option<Server> {
        let server = self.waiting.remove(&place).flatten();
        match &server {
            None => {
                self.free.remove(&place);
            }
            Some(server) => {
                if let Some(q) = self.queues.get_mut(server) {
                    q.remove(&place);
                }
                self.refresh(server);
            }
        }
        server
    }

    fn release(&mut self, server: &Server) {
        self.running -= 1;
        if let Some(n) = self.per_server.get_mut(server) {
            *n -= 1;
        }
        self.refresh(server);
    }
}

/// Where a tenant stands with its turn; leaving it (dropping) gives back what it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Waiting,
    Starting,
    Running,
    Done,
}

/// One tenant's turn: while held, its slot (if it needed one).
#[derive(Debug)]
pub struct Turn<'a> {
    turns: &'a Turns,
    place: usize,
    server: Option<Server>,
    held: Held,
    /// When it started, for its server's time per tenant.
    since: Option<Instant>,
}

impl Turns {
    /// `tenants`: every tenant of the wave in fleet order, with the server whose cap it
    /// counts against, or `None` when it needs no connection. `caps`: each server's cap.
    pub fn new(
        concurrency: usize,
        caps: HashMap<String, usize>,
        tenants: impl IntoIterator<Item = (usize, Option<String>)>,
    ) -> Turns {
        let caps: HashMap<Server, usize> = caps.into_iter().map(|(k, v)| (Server::from(k), v)).collect();
        let intern = |server: String| match caps.get_key_value(server.as_str()) {
            Some((key, _)) => key.clone(),
            None => Server::from(server),
        };
        let waiting: BTreeMap<usize, Option<Server>> = tenants
            .into_iter()
            .map(|(place, server)| (place, server.map(intern)))
            .collect();
        let mut free = BTreeSet::new();
        let mut queues: HashMap<Server, BTreeSet<usize>> = HashMap::new();
        for (place, server) in &waiting {
            match server {
                None => {
                    free.insert(*place);
                }
                Some(server) => {
                    queues.entry(server.clone()).or_default().insert(*place);
                }
            }
        }
        let servers: Vec<Server> = queues.keys().cloned().collect();
        let mut state = State {
            waiting,
            free,
            queues,
            ready: BTreeSet::new(),
            ready_of: HashMap::new(),
            ready_places: BTreeSet::new(),
            took: HashMap::new(),
            took_all: (0, 0),
            starting: false,
            running: 0,
            per_server: HashMap::new(),
            concurrency: concurrency.max(1),
            caps,
            proven: None,
            unproven_cap: usize::MAX,
            misses: HashMap::new(),
        };
        for server in &servers {
            state.refresh(server);
        }
        Turns {
            wake: state.waiting.keys().map(|p| (*p, Notify::new())).collect(),
            state: Mutex::new(state),
        }
    }

    /// Gives each host at most `at_most` tenants in flight (at least one) until
    /// [`Turns::proven`] says one of its tenants reached it (the breaker's ramp: see the
    /// module's note).
    pub fn ramp(self, at_most: usize) -> Turns {
        {
            let mut state = self.state.lock().expect("not poisoned");
            state.proven = Some(HashSet::new());
            state.unproven_cap = at_most.max(1);
        }
        self
    }

    /// A tenant of `server` reached it: its whole cap applies from now on.
    pub fn proven(&self, server: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        let Some(proven) = s.proven.as_mut() else { return };
        if !proven.contains(server) {
            let server: Server = Arc::from(server);
            proven.insert(server.clone());
            s.misses.remove(&server);
            s.refresh(&server);
            self.changed(&s);
        }
    }

    /// An attempt on `server` could not connect: while it is unproven, one tenant fewer
    /// may be in flight there (at least one).
    pub fn missed(&self, server: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        let unproven = s.proven.as_ref().is_some_and(|p| !p.contains(server));
        if unproven {
            let server: Server = Arc::from(server);
            *s.misses.entry(server.clone()).or_insert(0) += 1;
            s.refresh(&server);
            // Its head may have left the ready ones, and a tenant that needs no slot, held
            // back behind it, may start now.
            self.changed(&s);
        }
    }

    /// `server` was cut off: when a probe restores it, one tenant goes until one reaches it.
    pub fn unproven(&self, server: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        if let Some(proven) = s.proven.as_mut() {
            proven.remove(server);
            s.misses.remove(server);
            s.refresh(&Arc::from(server));
            self.changed(&s);
        }
    }

    /// Wakes the tenant that may start now, if there is one. A wake before it waits is
    /// kept for it (`notify_one`).
    fn changed(&self, state: &State) {
        if let Some(next) = state.next() {
            if let Some(wake) = self.wake.get(&next) {
                wake.notify_one();
            }
        }
    }

    /// The turn of the tenant at `place`, not yet taken. Made before anything else the
    /// tenant does, so a tenant that leaves early (the run stopped) gives up its place:
    /// a place left in the queue with no one to take it would hold back every tenant after it.
    pub fn turn(&self, place: usize) -> Turn<'_> {
        let server = self
            .state
            .lock()
            .expect("not poisoned")
            .waiting
            .get(&place)
            .cloned()
            .flatten();
        Turn {
            turns: self,
            place,
            server,
            held: Held::Waiting,
            since: None,
        }
    }

    /// Waits until the tenant at `place` is the next to start (see the module's order), and
    /// no other start is under way; then it holds its slot until the turn is dropped.
    pub async fn take(&self, place: usize) -> Turn<'_> {
        let mut turn = self.turn(place);
        turn.ready().await;
        turn
    }

    fn try_take(&self, place: usize) -> bool {
        let mut s = self.state.lock().expect("not poisoned");
        if s.next() != Some(place) {
            return false;
        }
        if let Some(server) = s.unwait(place) {
            s.running += 1;
            *s.per_server.entry(server.clone()).or_insert(0) += 1;
            s.refresh(&server);
        }
        s.starting = true;
        true
    }
}

impl Turn<'_> {
    /// The server whose cap the tenant counts against; `None` when it needs no connection.
    pub fn server(&self) -> Option<Arc<str>> {
        self.server.clone()
    }

    /// Waits until this tenant is the next to start and no other start is under way; then it holds its slot until dropped. At once if it already does.
    pub async fn ready(&mut self) {
        while self.held == Held::Waiting {
            if self.turns.try_take(self.place) {
                self.held = Held::Starting;
                return;
            }
            match self.turns.wake.get(&self.place) {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        }
    }

    /// The tenant has started (its start is recorded and announced): the next may start.
    pub fn started(&mut self) {
        if self.held == Held::Starting {
            let mut s = self.turns.state.lock().expect("not poisoned");
            s.starting = false;
            self.held = Held::Running;
            self.since = Some(Instant::now());
            self.turns.changed(&s);
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.turns.state.lock().expect("not poisoned");
        match self.held {
            Held::Waiting => {
                s.unwait(self.place);
            }
            Held::Starting | Held::Running => {
                if self.held == Held::Starting {
                    s.starting = false;
                }
                if let Some(server) = &self.server {
                    if let Some(since) = self.since {
                        s.took(server, since.elapsed().as_millis() as u64);
                    }
                    s.release(server);
                }
            }
            Held::Done => return,
        }
        self.held = Held::Done;
        self.turns.changed(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Starts whoever may start, in the order they do, until no one can.
    async fn starts(turns: &Arc<Turns>, places: &[usize]) -> Vec<usize> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut held = Vec::new();
        for &p in places.iter().rev() {
            let turns = turns.clone();
            let tx = tx.clone();
            held.push(tokio::spawn(async move {
                let mut turn = turns.take(p).await;
                turn.started();
                tx.send(p).unwrap();
                // Holds its slot until the test ends.
                std::future::pending::<()>().await;
                drop(turn);
            }));
        }
        drop(tx);
        tokio::task::yield_now().await;
        let mut order = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv()).await {
            order.push(p);
        }
        for h in held {
            h.abort();
        }
        order
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_that_leaves_before_its_turn_holds_back_no_one() {
        let caps: HashMap<String, usize> = [("a".to_owned(), 1)].into();
        let turns = Turns::new(
            8,
            caps,
            [(0, Some("a".to_owned())), (1, None), (2, Some("a".to_owned()))],
        );
        // Tenant 0 saw the stop before it ever waited: its place is given up with its turn.
        drop(turns.turn(0));
        let taken = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            let mut one = turns.take(1).await;
            one.started();
            let mut two = turns.take(2).await;
            two.started();
        })
        .await;
        assert!(taken.is_ok(), "tenants 1 and 2 waited for tenant 0, which had left");
    }

    #[tokio::test(start_paused = true)]
    async fn tenants_start_in_fleet_order_and_a_full_host_holds_back_only_its_own() {
        let caps: HashMap<String, usize> = [("a".to_owned(), 1), ("b".to_owned(), 2)].into();
        let tenants = [
            (0, Some("a".to_owned())),
            (1, Some("a".to_owned())),
            (2, None),
            (3, Some("b".to_owned())),
            (4, Some("b".to_owned())),
            (5, Some("b".to_owned())),
        ];
        let turns = Arc::new(Turns::new(8, caps.clone(), tenants.clone()));
        // Host a has room for one, host b for two: 1 and 5 wait, the rest start in order.
        assert_eq!(starts(&turns, &[0, 1, 2, 3, 4, 5]).await, [0, 2, 3, 4]);
        let turns = Arc::new(Turns::new(2, caps, tenants));
        assert_eq!(starts(&turns, &[0, 1, 2, 3, 4, 5]).await, [0, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_that_needs_no_slot_waits_behind_one_only_the_runs_concurrency_holds_back() {
        let caps: HashMap<String, usize> = [("a".to_owned(), 1), ("b".to_owned(), 1)].into();
        let tenants = [(0, Some("a".to_owned())), (1, Some("b".to_owned())), (2, None)];
        // `-j 1`: 0 holds the run's one slot, 1 waits for it, and 2 keeps its place behind 1.
        let turns = Arc::new(Turns::new(1, caps.clone(), tenants));
        assert_eq!(starts(&turns, &[0, 1, 2]).await, [0]);
        // Behind a tenant its full host holds back, it does not wait.
        let tenants = [(0, Some("a".to_owned())), (1, Some("a".to_owned())), (2, None)];
        let turns = Arc::new(Turns::new(1, caps, tenants));
        assert_eq!(starts(&turns, &[0, 1, 2]).await, [0, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_host_with_the_most_work_left_goes_first_and_ties_go_in_fleet_order() {
        let fleet = |a: usize, b: usize| -> Vec<(usize, Option<String>)> {
            (0..a)
                .map(|i| (i, Some("a".to_owned())))
                .chain((a..a + b).map(|i| (i, Some("b".to_owned()))))
                .collect()
        };
        let caps: HashMap<String, usize> = [("a".to_owned(), 1), ("b".to_owned(), 4)].into();
        // a: 2 tenants on 1 session; b: 12 on 4, three rounds. b goes first, and a's first
        // tenant waits until b has no more work left per session than a.
        let turns = Arc::new(Turns::new(4, caps.clone(), fleet(2, 12)));
        assert_eq!(starts(&turns, &(0..14).collect::<Vec<_>>()).await, [2, 3, 4, 5]);
        let turns = Arc::new(Turns::new(6, caps.clone(), fleet(2, 12)));
        assert_eq!(starts(&turns, &(0..14).collect::<Vec<_>>()).await, [2, 3, 4, 5, 0]);
        // As much work left on each: fleet order.
        let turns = Arc::new(Turns::new(4, caps, fleet(3, 12)));
        assert_eq!(starts(&turns, &(0..15).collect::<Vec<_>>()).await, [0, 3, 4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_whose_tenants_take_longer_counts_as_more_work() {
        let caps: HashMap<String, usize> = [("a".to_owned(), 1), ("b".to_owned(), 1)].into();
        // Two tenants each; with no timing yet, a (first in the fleet) goes first.
        let tenants = [0, 1]
            .map(|i| (i, Some("a".to_owned())))
            .into_iter()
            .chain([2, 3].map(|i| (i, Some("b".to_owned()))));
        let turns = Turns::new(1, caps, tenants);
        let mut first = turns.take(0).await;
        first.started();
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        drop(first);
        let mut second = turns.take(2).await;
        second.started();
        tokio::time::advance(std::time::Duration::from_millis(900)).await;
        drop(second);
        // a has 1 tenant of 100 ms left, b 1 of 900 ms: b's goes first.
        let next = tokio::time::timeout(std::time::Duration::from_millis(10), turns.take(1)).await;
        assert!(next.is_err(), "a's tenant started before b's, which has more work left");
        let mut third = turns.take(3).await;
        third.started();
    }
}
