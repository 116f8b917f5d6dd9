//! Charts for alert mail: drawn with plotters into an in-memory RGB buffer and encoded as PNG,
//! to be embedded inline (`cid:`) in the HTML part.
//!
//! What is drawn depends on the finding's [`Chart`]: reference vs current bars for a drifted
//! distribution or category mix, the error-budget burn over the period (with the projection
//! to its end), and — when a finding carries no chart — the observed value of every incident
//! of the group against the target. Text uses the DejaVu Sans shipped in `charts/`, so output
//! never depends on the machine's fonts.
//!
//! The PNG encoder is a small one of our own (LZ77 with fixed-Huffman deflate, adaptive row
//! filters): charts are flat colours and compress well. Pure: no file, no clock; the same
//! notification always gives the same bytes.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::incident::{IncidentView, Notification, ViewStatus};
use super::policy::Audience;
use crate::finding::{Chart, Check, Comparator, Finding, Unit};
use crate::session::EpochMs;

/// The font used for chart text.
pub const FONT: &[u8] = include_bytes!("../../charts/DejaVuSans.ttf");
/// Chart size in pixels (drawn at 2× for sharp text, shown at half size).
pub const WIDTH: u32 = 1200;
/// Chart height in pixels.
pub const HEIGHT: u32 = 520;

const FAMILY: &str = "sans-serif";
const RED: RGBColor = RGBColor(0xc6, 0x28, 0x28);
const AMBER: RGBColor = RGBColor(0xe0, 0x8a, 0x00);
const GREEN: RGBColor = RGBColor(0x2e, 0x7d, 0x32);
const SLATE: RGBColor = RGBColor(0x78, 0x90, 0x9c);
const INK: RGBColor = RGBColor(0x26, 0x32, 0x38);
const GRID: RGBColor = RGBColor(0xe6, 0xe9, 0xec);
const BLUE: RGBColor = RGBColor(0x15, 0x65, 0xc0);

/// A rendered chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartImage {
    /// PNG bytes.
    pub png: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Alternative text: what the chart shows, in words.
    pub alt: String,
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The font is embedded and known good; a failure would only lose chart text.
            let _ = register_font(FAMILY, style, FONT);
        }
    });
}

/// Display scaling of a unit: factor, suffix, prefix.
fn unit_scale(unit: Unit) -> (f64, &'static str, &'static str) {
    match unit {
        Unit::Ratio => (100.0, "%", ""),
        Unit::Ms => (0.001, " s", ""),
        Unit::Usd => (1.0, "", "$"),
        _ => (1.0, "", ""),
    }
}

fn fmt_scaled(v: f64, unit: Unit) -> String {
    let (k, suffix, prefix) = unit_scale(unit);
    let x = v * k;
    let s = if x.abs() >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{prefix}{s}{suffix}")
}

/// Draws the chart for a notification, or `None` when there is nothing to draw.
pub fn render(n: &Notification) -> Option<ChartImage> {
    let head = n
        .incidents
        .iter()
        .find(|v| v.status == ViewStatus::Firing)
        .or_else(|| n.incidents.first())?;
    let resolved = matches!(
        n.kind,
        super::incident::NotificationKind::Resolved | super::incident::NotificationKind::Recovered
    );
    let finding = if resolved { &head.peak } else { &head.latest };
    fonts();
    let plain = n.audience == Audience::Stakeholder;
    match &finding.chart {
        Some(Chart::Distribution {
            feature,
            edges,
            reference,
            current,
        }) => {
            let labels: Vec<String> = edges
                .windows(2)
                .map(|w| format!("{}–{}", short_num(w[0]), short_num(w[1])))
                .collect();
            paired_bars(
                &format!("{feature}: baseline vs now"),
                &labels,
                reference,
                current,
            )
        }
        Some(Chart::Categories {
            feature,
            labels,
            reference,
            current,
        }) => paired_bars(
            &format!("{feature}: baseline vs now"),
            labels,
            reference,
            current,
        ),
        Some(Chart::Budget { points, period_ms }) => budget_line(points, *period_ms, plain),
        None => group_bars(n, resolved, plain),
    }
}

fn short_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn bar_label(v: &IncidentView, keys_differ: bool) -> String {
    let seg = v
        .segment
        .as_deref()
        .map(|s| s.split_once('=').map_or(s, |(_, x)| x).to_owned())
        .unwrap_or_else(|| "overall".to_owned());
    if keys_differ {
        let key: Vec<&str> = v
            .key
            .iter()
            .filter(|(k, _)| k != "agent")
            .map(|(_, x)| x.as_str())
            .collect();
        format!("{} · {seg}", key.join("/"))
    } else {
        seg
    }
}

/// Observed value per incident of the group, with the target as a dashed line.
fn group_bars(n: &Notification, resolved: bool, plain: bool) -> Option<ChartImage> {
    let views: Vec<&IncidentView> = n.incidents.iter().take(8).collect();
    let first = &views.first()?.latest;
    let unit = first.unit;
    let target = first.target;
    let keys_differ = views.iter().any(|v| v.key != views[0].key);
    let bars: Vec<(String, f64, bool)> = views
        .iter()
        .map(|v| {
            let f: &Finding = if resolved { &v.peak } else { &v.latest };
            let breaching = match f.comparator {
                Comparator::AtMost => f.observed > f.target,
                Comparator::AtLeast => f.observed < f.target,
            };
            (bar_label(v, keys_differ), f.observed, breaching)
        })
        .collect();
    let by = views
        .iter()
        .find_map(|v| v.segment.as_deref())
        .and_then(|s| s.split_once('='))
        .map_or("segment".to_owned(), |(d, _)| d.replace('_', " "));
    let limit = match (first.comparator, unit) {
        (_, Unit::Count) if target == 0.0 => String::new(),
        _ if plain => " · dashed line: the promise".to_owned(),
        (Comparator::AtLeast, _) => format!(" · dashed: target {}", fmt_scaled(target, unit)),
        (Comparator::AtMost, _) => format!(" · dashed: limit {}", fmt_scaled(target, unit)),
    };
    let title = match (plain, first.unit) {
        (true, Unit::Count) => format!("Conversations affected, by {by}"),
        (true, Unit::Ratio) if matches!(first.check, Check::BurnRate | Check::Window) => {
            format!("Conversations that went well, by {by}{limit}")
        }
        (true, Unit::Ms) => format!("Slowest conversations, by {by}{limit}"),
        _ if resolved => format!(
            "Worst {} during the incident, by {by}{limit}",
            super::render::measure_name(first, plain)
        ),
        _ => format!(
            "{} by {by}{limit}",
            capitalize(&super::render::measure_name(first, plain))
        ),
    };
    let breach_color = if resolved {
        RGBColor(0xe5, 0x73, 0x73)
    } else if n.kind == super::incident::NotificationKind::ProjectedBreach {
        AMBER
    } else if n.group.severity == crate::spec::model::Severity::Page {
        RED
    } else {
        AMBER
    };
    let alt = format!(
        "{title}: {}; target {}",
        bars.iter()
            .map(|(l, v, _)| format!("{l} {}", fmt_scaled(*v, unit)))
            .collect::<Vec<_>>()
            .join(", "),
        fmt_scaled(target, unit)
    );
    let (k, _, _) = unit_scale(unit);
    let values: Vec<f64> = bars.iter().map(|(_, v, _)| v * k).collect();
    let t = target * k;
    let hi = values.iter().copied().fold(t, f64::max);
    let lo = values.iter().copied().fold(t, f64::min);
    let (y0, y1) = if unit == Unit::Ratio && lo > 50.0 {
        let span = (hi - lo).max(1.0);
        (
            (lo - span * 0.6).max(0.0).floor(),
            (hi + span * 0.25).min(100.0).ceil(),
        )
    } else {
        (0.0, if hi <= 0.0 { 1.0 } else { hi * 1.18 })
    };
    let unit_for_axis = unit;
    draw(alt, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin_top(20)
            .set_label_area_size(LabelAreaPosition::Top, 24)
            .margin_left(24)
            .margin_right(40)
            .margin_bottom(10)
            .caption(&title, (FAMILY, 34).into_font().color(&INK))
            .x_label_area_size(70)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..bars.len() as f64, y0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(5)
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(SLATE)
            .y_label_style((FAMILY, 24).into_font().color(&INK))
            .y_label_formatter(&|v| fmt_scaled(*v / k, unit_for_axis))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v, breaching))| {
                let color = if *breaching { breach_color } else { SLATE };
                Rectangle::new(
                    [(i as f64 + 0.18, y0), (i as f64 + 0.82, (v * k).max(y0))],
                    color.filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v, _))| {
                let label = fmt_scaled(*v, unit);
                EmptyElement::at((i as f64 + 0.5, (v * k).max(y0)))
                    + Text::new(
                        label,
                        (-(10 * fmt_len(*v, unit)), -34),
                        (FAMILY, 26).into_font().color(&INK),
                    )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (l, _, _))| {
                let shown: String = l.chars().take(22).collect();
                let w = shown.chars().count() as i32 * 6;
                EmptyElement::at((i as f64 + 0.5, y0))
                    + Text::new(shown, (-w, 14), (FAMILY, 24).into_font().color(&INK))
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, t), (bars.len() as f64, t)],
                14,
                8,
                INK.stroke_width(3),
            ))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn fmt_len(v: f64, unit: Unit) -> i32 {
    fmt_scaled(v, unit).chars().count() as i32 / 2 * 2 + 1
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Reference vs current shares on shared bins or categories.
fn paired_bars(
    title: &str,
    labels: &[String],
    reference: &[f64],
    current: &[f64],
) -> Option<ChartImage> {
    let n = labels.len().min(reference.len()).min(current.len()).min(12);
    if n == 0 {
        return None;
    }
    let hi = reference[..n]
        .iter()
        .chain(&current[..n])
        .copied()
        .fold(0.0f64, f64::max)
        .max(0.01);
    let alt = format!(
        "{title}: {}",
        (0..n)
            .map(|i| format!(
                "{} {:.0}% → {:.0}%",
                labels[i],
                reference[i] * 100.0,
                current[i] * 100.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let title = title.to_owned();
    draw(alt, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(24)
            .set_label_area_size(LabelAreaPosition::Top, 24)
            .caption(&title, (FAMILY, 34).into_font().color(&INK))
            .x_label_area_size(60)
            .y_label_area_size(100)
            .build_cartesian_2d(0f64..n as f64, 0f64..hi * 118.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(5)
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(SLATE)
            .y_label_style((FAMILY, 24).into_font().color(&INK))
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series((0..n).map(|i| {
                Rectangle::new(
                    [
                        (i as f64 + 0.12, 0.0),
                        (i as f64 + 0.48, reference[i] * 100.0),
                    ],
                    SLATE.filled(),
                )
            }))
            .map_err(|e| e.to_string())?
            .label("baseline")
            .legend(|(x, y)| Rectangle::new([(x, y - 8), (x + 24, y + 8)], SLATE.filled()));
        chart
            .draw_series((0..n).map(|i| {
                Rectangle::new(
                    [
                        (i as f64 + 0.52, 0.0),
                        (i as f64 + 0.88, current[i] * 100.0),
                    ],
                    BLUE.filled(),
                )
            }))
            .map_err(|e| e.to_string())?
            .label("now")
            .legend(|(x, y)| Rectangle::new([(x, y - 8), (x + 24, y + 8)], BLUE.filled()));
        chart
            .draw_series((0..n).map(|i| {
                let shown: String = labels[i].chars().take(14).collect();
                let w = shown.chars().count() as i32 * 6;
                EmptyElement::at((i as f64 + 0.5, 0.0))
                    + Text::new(shown, (-w, 14), (FAMILY, 22).into_font().color(&INK))
            }))
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FAMILY, 24).into_font().color(&INK))
            .background_style(WHITE.mix(0.9))
            .border_style(GRID)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Error budget consumed over the period, with the 100% line and the projection to its end.
fn budget_line(points: &[(EpochMs, f64)], period_ms: i64, plain: bool) -> Option<ChartImage> {
    let (&(t0, _), &(t1, last)) = (points.first()?, points.last()?);
    let elapsed = (t1 - t0).max(1);
    let end = t0 + period_ms.max(elapsed);
    let projected = last * (end - t0) as f64 / elapsed as f64;
    let hi = points
        .iter()
        .map(|p| p.1)
        .fold(projected.max(1.0), f64::max)
        * 118.0;
    let days = |t: EpochMs| (t - t0) as f64 / 86_400_000.0;
    let title = if plain {
        "Share of this period's allowance for failures used so far"
    } else {
        "Error budget consumed over the period"
    };
    let alt = format!(
        "{title}: {:.0}% used after {:.1} days; {:.0}% projected by day {:.0}",
        last * 100.0,
        days(t1),
        projected * 100.0,
        days(end)
    );
    draw(alt, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(24)
            .set_label_area_size(LabelAreaPosition::Top, 24)
            .caption(title, (FAMILY, 34).into_font().color(&INK))
            .x_label_area_size(60)
            .y_label_area_size(100)
            .build_cartesian_2d(0f64..days(end), 0f64..hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(5)
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(SLATE)
            .label_style((FAMILY, 24).into_font().color(&INK))
            .x_label_formatter(&|d| format!("day {d:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 100.0), (days(end), 100.0)],
                14,
                8,
                RED.stroke_width(3),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Polygon::new(
                std::iter::once((days(t0), 0.0))
                    .chain(points.iter().map(|(t, v)| (days(*t), v * 100.0)))
                    .chain(std::iter::once((days(t1), 0.0)))
                    .collect::<Vec<_>>(),
                BLUE.mix(0.15).filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(t, v)| (days(*t), v * 100.0)),
                BLUE.stroke_width(4),
            ))
            .map_err(|e| e.to_string())?;
        let color = if projected >= 1.0 { RED } else { GREEN };
        chart
            .draw_series(DashedLineSeries::new(
                vec![(days(t1), last * 100.0), (days(end), projected * 100.0)],
                10,
                8,
                color.stroke_width(3),
            ))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

type DrawResult = Result<(), String>;

fn draw(
    alt: String,
    body: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> Option<ChartImage> {
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        body(&root).ok()?;
        root.present().ok()?;
    }
    Some(ChartImage {
        png: png::encode_rgb(WIDTH, HEIGHT, &buf),
        width: WIDTH,
        height: HEIGHT,
        alt,
    })
}

/// A minimal PNG encoder: 8-bit RGB, adaptive None/Sub/Up row filters, zlib with LZ77 and
/// fixed-Huffman deflate.
pub mod png {
    /// Encodes `rgb` (`width × height × 3` bytes, rows top to bottom) as a PNG file.
    pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
        let stride = width as usize * 3;
        assert_eq!(rgb.len(), stride * height as usize, "buffer size");
        let mut raw = Vec::with_capacity((stride + 1) * height as usize);
        let mut candidates: [Vec<u8>; 3] = [vec![0; stride], vec![0; stride], vec![0; stride]];
        for y in 0..height as usize {
            let row = &rgb[y * stride..(y + 1) * stride];
            let prev = (y > 0).then(|| &rgb[(y - 1) * stride..y * stride]);
            for x in 0..stride {
                let left = if x >= 3 { row[x - 3] } else { 0 };
                let up = prev.map_or(0, |p| p[x]);
                candidates[0][x] = row[x];
                candidates[1][x] = row[x].wrapping_sub(left);
                candidates[2][x] = row[x].wrapping_sub(up);
            }
            let cost = |c: &[u8]| {
                c.iter()
                    .map(|&b| u64::from((b as i8).unsigned_abs()))
                    .sum::<u64>()
            };
            let best = (0..3).min_by_key(|&i| cost(&candidates[i])).unwrap_or(0);
            raw.push(best as u8);
            raw.extend_from_slice(&candidates[best]);
        }
        let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &zlib(&raw));
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// CRC-32 (ISO-HDLC), as PNG chunks use.
    pub fn crc32(data: &[u8]) -> u32 {
        let mut table = [0u32; 256];
        for (i, e) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        crc ^ 0xffff_ffff
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for chunk in data.chunks(5552) {
            for &x in chunk {
                a += u32::from(x);
                b += a;
            }
            a %= 65_521;
            b %= 65_521;
        }
        (b << 16) | a
    }

    /// A zlib stream (RFC 1950) of one fixed-Huffman deflate block.
    pub fn zlib(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01];
        out.extend_from_slice(&deflate(data));
        out.extend_from_slice(&adler32(data).to_be_bytes());
        out
    }

    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }

    impl Bits {
        fn put(&mut self, value: u32, count: u32) {
            self.acc |= u64::from(value) << self.n;
            self.n += count;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }

        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            let rev = code.reverse_bits() >> (32 - len);
            self.put(rev, len);
        }

        fn finish(mut self) -> Vec<u8> {
            if self.n > 0 {
                self.out.push(self.acc as u8);
            }
            self.out
        }
    }

    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];

    fn literal(bits: &mut Bits, sym: u32) {
        match sym {
            0..=143 => bits.code(0x30 + sym, 8),
            144..=255 => bits.code(0x190 + sym - 144, 9),
            256..=279 => bits.code(sym - 256, 7),
            _ => bits.code(0xc0 + sym - 280, 8),
        }
    }

    fn length(bits: &mut Bits, len: usize) {
        let i = LEN_BASE
            .iter()
            .rposition(|&b| usize::from(b) <= len)
            .unwrap_or(0);
        literal(bits, 257 + i as u32);
        let extra = u32::from(LEN_EXTRA[i]);
        if extra > 0 {
            bits.put((len - usize::from(LEN_BASE[i])) as u32, extra);
        }
    }

    fn distance(bits: &mut Bits, dist: usize) {
        let i = DIST_BASE
            .iter()
            .rposition(|&b| usize::from(b) <= dist)
            .unwrap_or(0);
        bits.code(i as u32, 5);
        let extra = u32::from(DIST_EXTRA[i]);
        if extra > 0 {
            bits.put((dist - usize::from(DIST_BASE[i])) as u32, extra);
        }
    }

    const WINDOW: usize = 32_768;
    const HASH_BITS: u32 = 15;
    const MAX_CHAIN: usize = 48;

    /// Raw deflate (RFC 1951): one final block with fixed Huffman codes, greedy LZ77.
    pub fn deflate(data: &[u8]) -> Vec<u8> {
        let mut bits = Bits {
            out: Vec::with_capacity(data.len() / 8 + 16),
            acc: 0,
            n: 0,
        };
        bits.put(1, 1); // BFINAL
        bits.put(1, 2); // BTYPE = 01, fixed Huffman
        let n = data.len();
        let mut head = vec![usize::MAX; 1 << HASH_BITS];
        let mut prev = vec![usize::MAX; n];
        let hash = |i: usize| {
            let v = u32::from(data[i]) << 16 | u32::from(data[i + 1]) << 8 | u32::from(data[i + 2]);
            (v.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
        };
        let insert = |i: usize, head: &mut Vec<usize>, prev: &mut Vec<usize>| {
            if i + 3 <= n {
                let h = hash(i);
                prev[i] = head[h];
                head[h] = i;
            }
        };
        let mut i = 0;
        while i < n {
            let (mut best_len, mut best_dist) = (0usize, 0usize);
            if i + 3 <= n {
                let max = (n - i).min(258);
                let mut cand = head[hash(i)];
                let mut chain = 0;
                while cand != usize::MAX && i - cand <= WINDOW && chain < MAX_CHAIN {
                    let mut l = 0;
                    while l < max && data[cand + l] == data[i + l] {
                        l += 1;
                    }
                    if l > best_len {
                        best_len = l;
                        best_dist = i - cand;
                        if l == max {
                            break;
                        }
                    }
                    cand = prev[cand];
                    chain += 1;
                }
            }
            if best_len >= 3 {
                length(&mut bits, best_len);
                distance(&mut bits, best_dist);
                for j in i..i + best_len {
                    insert(j, &mut head, &mut prev);
                }
                i += best_len;
            } else {
                literal(&mut bits, u32::from(data[i]));
                insert(i, &mut head, &mut prev);
                i += 1;
            }
        }
        literal(&mut bits, 256);
        bits.finish()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A decoder for exactly what `deflate` writes (one fixed-Huffman block).
        fn inflate_fixed(src: &[u8]) -> Vec<u8> {
            let mut pos = 0usize;
            let mut bit = |count: u32| -> u32 {
                let mut v = 0;
                for k in 0..count {
                    let b = (src[pos / 8] >> (pos % 8)) & 1;
                    v |= u32::from(b) << k;
                    pos += 1;
                }
                v
            };
            assert_eq!(bit(1), 1);
            assert_eq!(bit(2), 1);
            let mut out: Vec<u8> = Vec::new();
            let read_msb = |bit: &mut dyn FnMut(u32) -> u32, len: u32| {
                let mut v = 0;
                for _ in 0..len {
                    v = (v << 1) | bit(1);
                }
                v
            };
            loop {
                let mut code = read_msb(&mut bit, 7);
                let sym = if code <= 0x17 {
                    code + 256
                } else {
                    code = (code << 1) | bit(1);
                    if (0x30..=0xbf).contains(&code) {
                        code - 0x30
                    } else if (0xc0..=0xc7).contains(&code) {
                        code - 0xc0 + 280
                    } else {
                        code = (code << 1) | bit(1);
                        code - 0x190 + 144
                    }
                };
                match sym {
                    0..=255 => out.push(sym as u8),
                    256 => break,
                    _ => {
                        let i = (sym - 257) as usize;
                        let len = usize::from(LEN_BASE[i]) + bit(u32::from(LEN_EXTRA[i])) as usize;
                        let d = read_msb(&mut bit, 5) as usize;
                        let dist =
                            usize::from(DIST_BASE[d]) + bit(u32::from(DIST_EXTRA[d])) as usize;
                        let start = out.len() - dist;
                        for k in 0..len {
                            out.push(out[start + k]);
                        }
                    }
                }
            }
            out
        }

        #[test]
        fn deflate_round_trips() {
            let mut data = Vec::new();
            for i in 0..70_000u32 {
                data.push((i % 7) as u8 * 30);
                if i % 1000 < 300 {
                    data.push((i * 31 % 251) as u8);
                }
            }
            data.extend_from_slice(&[200; 600]);
            for d in [&data[..], b"", b"a", b"abcabcabcabcabc"] {
                assert_eq!(inflate_fixed(&deflate(d)), d);
            }
            assert!(deflate(&data).len() < data.len() / 3);
        }

        #[test]
        fn checksums() {
            assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
            assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        }

        #[test]
        fn png_structure() {
            let png = encode_rgb(2, 2, &[255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(&png[12..16], b"IHDR");
            assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]));
        }
    }
}
