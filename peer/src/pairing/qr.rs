//! Text as a QR code (a join URL, a manual WebRTC offer): in the terminal, as SVG, or as PNG.

use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};

/// Why a QR code could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// The text does not fit a QR code.
    #[error("too long for a QR code")]
    TooLong,
    /// The PNG could not be encoded.
    #[error("PNG: {0}")]
    Png(String),
}

/// Light modules around the code (the standard's quiet zone).
const QUIET: usize = 4;
/// Pixels per module in a PNG.
const SCALE: usize = 8;

fn code(text: &str) -> Result<QrCode, QrError> {
    // Medium error correction: a phone screen photographed off another screen reads it.
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| QrError::TooLong)
}

/// Half-block characters, light on dark so it reads on a dark terminal (and a light one).
pub fn terminal(text: &str) -> Result<String, QrError> {
    Ok(code(text)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// An SVG document.
pub fn svg(text: &str) -> Result<String, QrError> {
    Ok(code(text)?.render::<svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build())
}

/// A greyscale PNG (8 px a module, with the quiet zone).
pub fn png(text: &str) -> Result<Vec<u8>, QrError> {
    let c = code(text)?;
    let (modules, colors) = (c.width(), c.to_colors());
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).map_err(|_| QrError::TooLong)?;
    let mut enc = png::Encoder::new(&mut out, side32, side32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| QrError::Png(e.to_string()))?;
    w.write_image_data(&pixels).map_err(|e| QrError::Png(e.to_string()))?;
    w.finish().map_err(|e| QrError::Png(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "hearth://join?v=1&rv=https%3A%2F%2Frv.example.org#4821-apple-river-stone";

    /// Decodes a PNG with an independent QR reader (`rqrr`).
    fn read_png(bytes: &[u8]) -> String {
        let mut dec = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; dec.output_buffer_size()];
        let info = dec.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_png_decodes_to_the_same_url() {
        assert_eq!(read_png(&png(URL).unwrap()), URL);
    }

    #[test]
    fn terminal_and_svg_renderings_are_made() {
        let t = terminal(URL).unwrap();
        assert!(t.lines().count() > 15 && t.contains('▀'));
        let s = svg(URL).unwrap();
        assert!(s.starts_with("<?xml") && s.contains("<svg"));
        assert!(matches!(png(&"x".repeat(5000)), Err(QrError::TooLong)));
    }
}
