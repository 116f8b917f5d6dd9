//! Charts for alert mail: drawn with plotters into an in-memory RGB buffer and encoded as PNG,
//! to be embedded inline (`cid:`) in the HTML part.
//!
//! What is drawn depends on the finding's [`Chart`]: reference vs current bars for a drifted
//! distribution or category mix, the error-budget burn over the period (with the projection
//! to its end), and — when a finding carries no chart — the observed value of every incident
//! of the group against the target. Text uses the DejaVu Sans shipped in `assets/fonts/`, so
//! output never depends on the machine's fonts.
//!
//! The RGB buffer is encoded by the `png` crate (adaptive row filters, which suit the flat
//! colours of a chart). Pure: no file, no clock; the same notification always gives the same
//! bytes.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::incident::{IncidentView, Notification, ViewStatus};
use super::policy::Audience;
use crate::finding::{Chart, Check, Comparator, Finding, Unit};
use crate::session::EpochMs;

/// The font used for chart text.
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
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
    let rgb = paint(body)?;
    Some(ChartImage {
        png: encode_png(WIDTH, HEIGHT, &rgb).ok()?,
        width: WIDTH,
        height: HEIGHT,
        alt,
    })
}

/// Draws on a white [`WIDTH`] × [`HEIGHT`] canvas; returns its RGB bytes, rows top to bottom.
fn paint(
    body: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> Option<Vec<u8>> {
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        body(&root).ok()?;
        root.present().ok()?;
    }
    Some(buf)
}

/// Encodes `rgb` (`width × height × 3` bytes, rows top to bottom) as an 8-bit RGB PNG.
fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // The encoder defaults to its fast mode, which makes charts twice the size; the default
    // zlib level with a filter chosen per row keeps them around 20–30 kB in about 10 ms.
    encoder.set_compression(png::Compression::Default);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(png_bytes)
            .read_info()
            .expect("a PNG header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("one frame");
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn the_png_holds_exactly_what_plotters_drew() {
        let rgb = paint(|root| {
            root.draw(&Rectangle::new([(100, 50), (300, 250)], RED.filled()))
                .map_err(|e| e.to_string())
        })
        .expect("drawn");
        let png_bytes = encode_png(WIDTH, HEIGHT, &rgb).expect("encoded");
        let (info, pixels) = decode(&png_bytes);
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        assert_eq!(
            (info.color_type, info.bit_depth),
            (png::ColorType::Rgb, png::BitDepth::Eight)
        );
        assert!(pixels == rgb, "decoded pixels differ from the drawn buffer");
        let at = |x: u32, y: u32| {
            let i = ((y * WIDTH + x) * 3) as usize;
            [pixels[i], pixels[i + 1], pixels[i + 2]]
        };
        assert_eq!(at(200, 150), [0xc6, 0x28, 0x28]);
        assert_eq!(at(10, 10), [255, 255, 255]);
        assert_eq!(at(WIDTH - 1, HEIGHT - 1), [255, 255, 255]);
        // Flat colours compress well.
        assert!(
            png_bytes.len() < rgb.len() / 50,
            "{} bytes",
            png_bytes.len()
        );
    }

    #[test]
    fn a_chart_is_the_same_bytes_every_time() {
        fonts();
        let chart = || {
            budget_line(
                &[(0, 0.0), (86_400_000, 0.2), (2 * 86_400_000, 0.5)],
                7 * 86_400_000,
                false,
            )
            .expect("a chart")
        };
        let (a, b) = (chart(), chart());
        assert_eq!(a.png, b.png);
        let (info, _) = decode(&a.png);
        assert_eq!((info.width, info.height), (a.width, a.height));
    }
}
