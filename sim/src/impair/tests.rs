use super::*;

fn imp(pairs: &[(&str, &str)]) -> Impairment {
    let mut i = Impairment::default();
    for (k, v) in pairs {
        i.set(k, v).unwrap();
    }
    i
}

#[test]
fn values_parse_as_netem_writes_them() {
    let i = imp(&[
        ("delay", "50ms"),
        ("jitter", "1.5ms"),
        ("loss", "20% 25%"),
        ("duplicate", "0.5"),
        ("reorder", "25%"),
        ("rate", "10mbit"),
        ("seed", "7"),
    ]);
    assert_eq!(i.delay, Duration::from_millis(50));
    assert_eq!(i.jitter, Duration::from_micros(1500));
    assert_eq!(
        i.loss,
        Chance {
            ppm: 200_000,
            correlation_ppm: 250_000
        }
    );
    assert_eq!(i.duplicate.ppm, 5_000);
    assert_eq!(i.rate.unwrap().bits_per_sec, 10_000_000);
    assert_eq!(
        i.to_string(),
        "delay 50ms jitter 1500us loss 20% 25% duplicate 0.5% reorder 25% rate 10mbit seed 7"
    );
    assert_eq!(parse_rate("2mbps").unwrap().bits_per_sec, 16_000_000);
    assert_eq!(parse_rate("1.5gbit").unwrap().to_string(), "1500mbit");
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(Impairment::default().to_string(), "none");
}

#[test]
fn bad_values_name_the_parameter_and_what_was_expected() {
    let mut i = Impairment::default();
    let e = i.set("loss", "120%").unwrap_err();
    assert_eq!(
        e.to_string(),
        "loss = \"120%\": expected a percentage 0 to 100 such as 20%, with an optional correlation (20% 25%)"
    );
    assert!(
        i.set("delay", "50")
            .unwrap_err()
            .to_string()
            .contains("50ms")
    );
    assert!(i.set("rate", "10").is_err());
    assert!(i.set("loss", "1% 2% 3%").is_err());
    assert_eq!(
        i.set("latency", "5ms").unwrap_err().to_string(),
        "unknown impairment `latency` (known: delay, jitter, loss, duplicate, reorder, rate, seed)"
    );
    assert!(imp(&[("reorder", "5%")]).validate().is_err());
    assert!(
        imp(&[("delay", "1ms"), ("jitter", "2ms")])
            .validate()
            .is_err()
    );
    assert!(
        imp(&[("delay", "2ms"), ("jitter", "2ms"), ("reorder", "1")])
            .validate()
            .is_ok()
    );
}

#[test]
fn one_seed_gives_one_pattern_and_another_seed_another() {
    let p = imp(&[
        ("loss", "20%"),
        ("delay", "10ms"),
        ("jitter", "5ms"),
        ("duplicate", "3%"),
    ]);
    let run = |seed| {
        let mut d = Decider::new(&p, seed);
        (0..2000).map(|_| d.fate()).collect::<Vec<_>>()
    };
    assert_eq!(
        run(stream_seed(0, 3, Way::Forward)),
        run(stream_seed(0, 3, Way::Forward))
    );
    assert_ne!(
        run(stream_seed(0, 3, Way::Forward)),
        run(stream_seed(0, 3, Way::Reverse))
    );
    assert_ne!(
        run(stream_seed(0, 3, Way::Forward)),
        run(stream_seed(1, 3, Way::Forward))
    );
}

#[test]
fn chances_come_out_at_their_rates() {
    let n = 200_000;
    let p = imp(&[
        ("loss", "20%"),
        ("duplicate", "5%"),
        ("delay", "10ms"),
        ("reorder", "25%"),
    ]);
    let mut d = Decider::new(&p, 42);
    let (mut lost, mut twice, mut at_once) = (0, 0, 0);
    for _ in 0..n {
        match d.fate() {
            Fate::Drop => lost += 1,
            Fate::Deliver { after, twice: t } => {
                twice += usize::from(t);
                at_once += usize::from(after.is_zero());
            }
        }
    }
    let share = |k: usize, of: usize| k as f64 / of as f64;
    assert!((share(lost, n) - 0.20).abs() < 0.005, "{lost}");
    assert!((share(twice, n - lost) - 0.05).abs() < 0.003, "{twice}");
    assert!((share(at_once, n - lost) - 0.25).abs() < 0.005, "{at_once}");
}

#[test]
fn correlation_makes_losses_come_in_runs() {
    let runs = |loss: &str| {
        let mut d = Decider::new(&imp(&[("loss", loss)]), 9);
        let v: Vec<bool> = (0..100_000).map(|_| d.fate() == Fate::Drop).collect();
        v.iter().filter(|l| **l).count() as f64
            / v.windows(2).filter(|w| w[1] && !w[0]).count().max(1) as f64
    };
    let plain = runs("20%");
    let correlated = runs("20% 75%");
    assert!(plain < 1.4, "{plain}");
    // netem's correlation is weak (and it narrows the draws, so fewer fall under the
    // threshold): runs lengthen, modestly. Faithful to netem, not to a Gilbert model.
    assert!(correlated > plain + 0.15, "{plain} {correlated}");
}

#[test]
fn jitter_stays_within_its_bounds_and_reorder_skips_the_delay() {
    let mut d = Decider::new(&imp(&[("delay", "50ms"), ("jitter", "10ms")]), 1);
    let delays: Vec<Duration> = (0..10_000)
        .map(|_| match d.fate() {
            Fate::Deliver { after, .. } => after,
            Fate::Drop => panic!("no loss set"),
        })
        .collect();
    let (lo, hi) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    assert!(*lo >= Duration::from_millis(40) && *hi <= Duration::from_millis(60));
    assert!(*lo < Duration::from_millis(41) && *hi > Duration::from_millis(59));
    let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
    assert!(mean.abs_diff(Duration::from_millis(50)) < Duration::from_micros(300));
}

#[test]
fn the_shaper_holds_its_rate_and_drops_beyond_its_latency() {
    let rate = parse_rate("10mbit").unwrap();
    let mut s = Shaper::new(rate);
    // 1500-byte packets offered at 20 Mbit/s for one second.
    let gap = 600_000u64;
    let mut sent = 0u64;
    let mut last_departure = 0u64;
    for i in 0..(1_000_000_000 / gap) {
        let now = i * gap;
        if let Some(wait) = s.admit(now, 1500) {
            sent += 1500 * 8;
            last_departure = now + wait.as_nanos() as u64;
        }
    }
    let mbit = sent as f64 / (last_departure as f64 / 1e9) / 1e6;
    assert!((mbit - 10.0).abs() < 0.3, "{mbit}");
    assert_eq!(rate.bucket(), (5000, Duration::from_millis(100)));
}
