//! Writes a synthetic reefer-truck recording (JSON lines) to stdout, for
//! benchmarks and replay tests until `floe simulate` exists.
//!
//! ```sh
//! cargo run --release --example reefer_recording -- 10000000 10000 > /tmp/reefer.jsonl
//! ```
//!
//! Arguments: number of lines (default 1,000,000), number of trucks (default
//! 10,000). Each truck reports every 10 s; about one truck in fifty has a
//! compressor failure that warms its cargo past 4 C. Output is the same for
//! the same arguments.

use std::io::{BufWriter, Write};

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let lines = args.next().and_then(Result::ok).unwrap_or(1_000_000);
    let trucks = args.next().and_then(Result::ok).unwrap_or(10_000).max(1);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut rng = 0x5eed_u64;
    for i in 0..lines {
        let truck = i % trucks;
        let step = (i / trucks) as i64;
        let t = START + step * 10_000 + (truck as i64 * 7) % 10_000;
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((rng >> 33) % 600) as f64 / 1000.0 - 0.3;
        // One truck in fifty loses its compressor an hour in and warms up.
        let failing = truck % 50 == 7 && step > 360;
        let temperature = if failing {
            2.0 + (step - 360) as f64 * 0.02
        } else {
            2.0
        } + noise;
        let door_open = (step + truck as i64) % 720 < 3;
        let lat = 52.0 + (truck % 100) as f64 * 0.01 + step as f64 * 1e-5;
        let lon = 4.5 + (truck / 100 % 100) as f64 * 0.01;
        writeln!(
            out,
            r#"{{"device":"truck-{truck:05}","ts":"{}","kind":"reefer","temperature_c":{temperature:.2},"setpoint_c":2.0,"door_open":{door_open},"lat":{lat:.5},"lon":{lon:.5}}}"#,
            floe::event::time::format_rfc3339(t)
        )?;
    }
    out.flush()
}
