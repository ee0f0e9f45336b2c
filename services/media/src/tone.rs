//! G.711 (ITU-T G.711 µ-law and A-law, the segment-and-quantiser form of the reference
//! implementation) and the generators the media service plays to a leg: call-progress tones
//! (ringback) and pre-encoded G.711 audio in a loop (music on hold), as 20 ms RTP packets of
//! 160 samples at 8 kHz with their own sequence numbers, timestamps and SSRC.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::relay::{RTP_HEADER_LEN, RtpHeader};

/// Samples per second of G.711.
pub const SAMPLE_RATE: u32 = 8_000;
/// Samples in one 20 ms packet.
pub const SAMPLES_PER_PACKET: usize = 160;
/// The packetisation interval.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// PCMU, static payload type 0 (North America, Japan).
    MuLaw,
    /// PCMA, static payload type 8 (Europe and most of the world).
    ALaw,
}

const MU_BIAS: i32 = 0x84;
const MU_CLIP: i32 = 8_159;
/// Segment end points of µ-law on the 14-bit magnitude (after the bias).
const MU_SEGMENT_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// Segment end points of A-law on the 13-bit magnitude.
const A_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(value: i32, ends: &[i32; 8]) -> Option<i32> {
    ends.iter().position(|&end| value <= end).map(|s| s as i32)
}

impl G711 {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            G711::MuLaw => 0,
            G711::ALaw => 8,
        }
    }

    /// Encodes a 16-bit linear sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711::MuLaw => linear_to_mulaw(sample),
            G711::ALaw => linear_to_alaw(sample),
        }
    }

    /// Decodes to a 16-bit linear sample.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            G711::MuLaw => mulaw_to_linear(code),
            G711::ALaw => alaw_to_linear(code),
        }
    }

    /// The code of a zero sample.
    pub fn silence(self) -> u8 {
        self.encode(0)
    }
}

/// µ-law: 14-bit magnitude, bias 33, eight segments of 16 steps, all bits inverted.
pub fn linear_to_mulaw(sample: i16) -> u8 {
    let mut value = i32::from(sample) >> 2;
    let mask = if value < 0 {
        value = -value;
        0x7F
    } else {
        0xFF
    };
    value = value.min(MU_CLIP) + (MU_BIAS >> 2);
    let code = match segment(value, &MU_SEGMENT_END) {
        Some(seg) => (seg << 4) | ((value >> (seg + 1)) & 0x0F),
        None => 0x7F,
    };
    (code ^ mask) as u8
}

pub fn mulaw_to_linear(code: u8) -> i16 {
    let code = i32::from(!code);
    let mut t = ((code & 0x0F) << 3) + MU_BIAS;
    t <<= (code & 0x70) >> 4;
    let value = if code & 0x80 != 0 {
        MU_BIAS - t
    } else {
        t - MU_BIAS
    };
    value as i16
}

/// A-law: 13-bit magnitude, eight segments of 16 steps, even bits inverted (XOR 0x55).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut value = i32::from(sample) >> 3;
    let mask = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    let code = match segment(value, &A_SEGMENT_END) {
        Some(seg) => {
            let shift = if seg < 2 { 1 } else { seg };
            (seg << 4) | ((value >> shift) & 0x0F)
        }
        None => 0x7F,
    };
    (code ^ mask) as u8
}

pub fn alaw_to_linear(code: u8) -> i16 {
    let code = i32::from(code ^ 0x55);
    let mut t = (code & 0x0F) << 4;
    let seg = (code & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let value = if code & 0x80 != 0 { t } else { -t };
    value as i16
}

/// A call-progress tone: one or two frequencies, each at `level_dbm0`, switched by a cadence.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneSpec {
    pub frequencies_hz: Vec<f64>,
    /// Level of each frequency component (ETSI ES 201 970 and national plans: -10 to -19 dBm0).
    pub level_dbm0: f64,
    /// Alternating on and off durations, starting with on; empty plays continuously.
    pub cadence: Vec<Duration>,
}

impl ToneSpec {
    /// ETSI/CEPT ringback: 425 Hz, 1 s on, 4 s off.
    pub fn ringback_europe() -> ToneSpec {
        ToneSpec {
            frequencies_hz: vec![425.0],
            level_dbm0: -10.0,
            cadence: vec![Duration::from_secs(1), Duration::from_secs(4)],
        }
    }

    /// North American ringback: 440 + 480 Hz, 2 s on, 4 s off.
    pub fn ringback_north_america() -> ToneSpec {
        ToneSpec {
            frequencies_hz: vec![440.0, 480.0],
            level_dbm0: -19.0,
            cadence: vec![Duration::from_secs(2), Duration::from_secs(4)],
        }
    }

    /// UK ringback: 400 + 450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off.
    pub fn ringback_uk() -> ToneSpec {
        ToneSpec {
            frequencies_hz: vec![400.0, 450.0],
            level_dbm0: -19.0,
            cadence: [400, 200, 400, 2_000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
        }
    }

    /// Peak amplitude of one component on the 16-bit scale. The digital maximum of G.711
    /// (±32124 µ-law) is a sine of +3.17 dBm0 (G.711 §4).
    fn amplitude(&self) -> f64 {
        32_124.0 * 10f64.powf((self.level_dbm0 - 3.17) / 20.0)
    }

    /// Cadence in samples: (period, on-intervals as [start, end)).
    fn cadence_samples(&self) -> Option<(u64, Vec<(u64, u64)>)> {
        if self.cadence.is_empty() {
            return None;
        }
        let samples = |d: &Duration| {
            (d.as_micros() as u64).saturating_mul(u64::from(SAMPLE_RATE)) / 1_000_000
        };
        let mut at = 0u64;
        let mut on = Vec::new();
        for (i, d) in self.cadence.iter().enumerate() {
            let len = samples(d);
            if i % 2 == 0 {
                on.push((at, at + len));
            }
            at += len;
        }
        (at > 0).then_some((at, on))
    }
}

/// The header state of one outgoing RTP stream (RFC 3550 §5.1: random initial sequence
/// number, timestamp and SSRC; the marker on the first packet of a talkspurt).
#[derive(Debug, Clone)]
pub struct RtpStream {
    codec: G711,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    first: bool,
}

impl RtpStream {
    pub fn new(codec: G711, ssrc: u32, sequence: u16, timestamp: u32) -> RtpStream {
        RtpStream {
            codec,
            ssrc,
            sequence,
            timestamp,
            first: true,
        }
    }

    /// With random initial values.
    pub fn random(codec: G711) -> RtpStream {
        RtpStream::new(codec, rand::random(), rand::random(), rand::random())
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Wraps one 20 ms payload and advances the sequence number and the timestamp.
    pub fn packet(&mut self, payload: &[u8; SAMPLES_PER_PACKET]) -> Bytes {
        let mut header = [0u8; RTP_HEADER_LEN];
        RtpHeader {
            marker: self.first,
            payload_type: self.codec.payload_type(),
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        }
        .write(&mut header);
        self.first = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_PACKET as u32);
        let mut out = BytesMut::with_capacity(RTP_HEADER_LEN + SAMPLES_PER_PACKET);
        out.put_slice(&header);
        out.put_slice(payload);
        out.freeze()
    }
}

/// Plays a [`ToneSpec`]; silence (not nothing) between the bursts, so the phone's jitter
/// buffer and its NAT binding stay fed and the timestamps stay continuous.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    codec: G711,
    omega: Vec<f64>,
    amplitude: f64,
    cadence: Option<(u64, Vec<(u64, u64)>)>,
    sample: u64,
    stream: RtpStream,
}

impl ToneGenerator {
    pub fn new(spec: &ToneSpec, stream: RtpStream) -> ToneGenerator {
        ToneGenerator {
            codec: stream.codec,
            omega: spec
                .frequencies_hz
                .iter()
                .map(|f| 2.0 * std::f64::consts::PI * f / f64::from(SAMPLE_RATE))
                .collect(),
            amplitude: spec.amplitude(),
            cadence: spec.cadence_samples(),
            sample: 0,
            stream,
        }
    }

    fn tone_on(&self, n: u64) -> bool {
        match &self.cadence {
            None => true,
            Some((period, on)) => {
                let at = n % period;
                on.iter().any(|&(start, end)| (start..end).contains(&at))
            }
        }
    }

    /// The next 20 ms packet.
    pub fn next_packet(&mut self) -> Bytes {
        let mut payload = [0u8; SAMPLES_PER_PACKET];
        for code in payload.iter_mut() {
            let n = self.sample;
            self.sample += 1;
            let value = if self.tone_on(n) {
                // n stays exact in f64 for 2^53 samples (35,000 years at 8 kHz).
                self.omega
                    .iter()
                    .map(|w| self.amplitude * (w * n as f64).sin())
                    .sum::<f64>()
            } else {
                0.0
            };
            *code = self
                .codec
                .encode(value.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
        }
        self.stream.packet(&payload)
    }
}

/// Loops pre-encoded G.711 audio (a music-on-hold file already in the leg's law).
#[derive(Debug, Clone)]
pub struct G711Player {
    audio: Bytes,
    position: usize,
    stream: RtpStream,
}

impl G711Player {
    /// `audio` is raw G.711 in the stream's law; empty audio plays silence.
    pub fn new(audio: Bytes, stream: RtpStream) -> G711Player {
        G711Player {
            audio,
            position: 0,
            stream,
        }
    }

    pub fn next_packet(&mut self) -> Bytes {
        let mut payload = [self.stream.codec.silence(); SAMPLES_PER_PACKET];
        if !self.audio.is_empty() {
            for code in payload.iter_mut() {
                *code = self.audio[self.position];
                self.position = (self.position + 1) % self.audio.len();
            }
        }
        self.stream.packet(&payload)
    }
}

/// What the relay plays to a leg instead of the other leg's media.
#[derive(Debug, Clone, PartialEq)]
pub enum Playback {
    /// A call-progress tone (ringback) in the leg's law.
    Tone { spec: ToneSpec, codec: G711 },
    /// Raw G.711 audio in the leg's law, looped (music on hold).
    Audio { audio: Bytes, codec: G711 },
}

impl Playback {
    /// A generator for this playback, with a random SSRC, sequence number and timestamp.
    pub fn generator(&self) -> Generator {
        match self {
            Playback::Tone { spec, codec } => {
                Generator::Tone(ToneGenerator::new(spec, RtpStream::random(*codec)))
            }
            Playback::Audio { audio, codec } => {
                Generator::Audio(G711Player::new(audio.clone(), RtpStream::random(*codec)))
            }
        }
    }
}

/// Why a WAV file cannot be played.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// Not a RIFF/WAVE file, or a chunk runs past the end.
    #[error("not a WAV file: {0}")]
    Malformed(&'static str),
    /// Only 8 kHz mono 16-bit PCM, A-law or µ-law is played (no resampling or mixing down).
    #[error(
        "unsupported WAV format {format} ({channels} channel(s), {sample_rate} Hz, {bits} bits)"
    )]
    Unsupported {
        format: u16,
        channels: u16,
        sample_rate: u32,
        bits: u16,
    },
}

/// Reads a WAV file (music on hold) into raw G.711 in `codec`'s law, for
/// [`Playback::Audio`]: 8 kHz mono, as 16-bit PCM (encoded) or already A-law/µ-law
/// (transcoded if the law differs).
pub fn wav_to_g711(file: &[u8], codec: G711) -> Result<Bytes, WavError> {
    let le16 = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if file.len() < 12 || &file[0..4] != b"RIFF" || &file[8..12] != b"WAVE" {
        return Err(WavError::Malformed("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= file.len() {
        let id = &file[at..at + 4];
        let len = le32(file, at + 4) as usize;
        let body = file
            .get(at + 8..at + 8 + len)
            .ok_or(WavError::Malformed("chunk past the end"))?;
        match id {
            b"fmt " if len >= 16 => {
                format = Some((le16(body, 0), le16(body, 2), le32(body, 4), le16(body, 14)));
            }
            b"data" => {
                let (tag, channels, sample_rate, bits) =
                    format.ok_or(WavError::Malformed("data before fmt"))?;
                let unsupported = WavError::Unsupported {
                    format: tag,
                    channels,
                    sample_rate,
                    bits,
                };
                if channels != 1 || sample_rate != SAMPLE_RATE {
                    return Err(unsupported);
                }
                let out: Vec<u8> = match (tag, bits) {
                    (1, 16) => body
                        .chunks_exact(2)
                        .map(|s| codec.encode(i16::from_le_bytes([s[0], s[1]])))
                        .collect(),
                    (6, 8) => body
                        .iter()
                        .map(|&c| codec.encode(alaw_to_linear(c)))
                        .collect(),
                    (7, 8) => body
                        .iter()
                        .map(|&c| codec.encode(mulaw_to_linear(c)))
                        .collect(),
                    _ => return Err(unsupported),
                };
                return Ok(Bytes::from(out));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at += 8 + len + (len & 1);
    }
    Err(WavError::Malformed("no data chunk"))
}

/// A running playback: one 20 ms packet per call.
#[derive(Debug, Clone)]
pub enum Generator {
    Tone(ToneGenerator),
    Audio(G711Player),
}

impl Generator {
    pub fn next_packet(&mut self) -> Bytes {
        match self {
            Generator::Tone(tone) => tone.next_packet(),
            Generator::Audio(player) => player.next_packet(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulaw_reference_values() {
        assert_eq!(linear_to_mulaw(0), 0xFF);
        assert_eq!(linear_to_mulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_mulaw(i16::MIN), 0x00);
        // 1000 → 14-bit 250, +33 = 283: segment 3, step (283 >> 4) & 15 = 1 → !0x31.
        assert_eq!(linear_to_mulaw(1000), 0xCE);
        assert_eq!(linear_to_mulaw(-1000), 0x4E);
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x80), 32_124);
        assert_eq!(mulaw_to_linear(0x00), -32_124);
        assert_eq!(mulaw_to_linear(0xCE), 988);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32_256);
        assert_eq!(alaw_to_linear(0x2A), -32_256);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
            if code != 0x7F {
                // 0x7F is µ-law's negative zero: it decodes to 0, which encodes as 0xFF.
                assert_eq!(
                    linear_to_mulaw(mulaw_to_linear(code)),
                    code,
                    "µ-law {code:#04x}"
                );
            }
        }
    }

    #[test]
    fn quantisation_error_stays_within_half_a_step() {
        for law in [G711::MuLaw, G711::ALaw] {
            for sample in (i16::MIN..=i16::MAX).step_by(7) {
                let back = i32::from(law.decode(law.encode(sample)));
                let error = (back - i32::from(sample)).abs();
                // The largest step is 1024 (µ-law) / 1024 (A-law) on the 16-bit scale.
                let bound = 8 + i32::from(sample).abs() / 16;
                assert!(error <= bound.max(16), "{law:?} {sample} → {back}");
            }
        }
    }

    /// Power of `frequency` in a block (Goertzel).
    fn power(samples: &[f64], frequency: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * frequency / f64::from(SAMPLE_RATE);
        let coefficient = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in samples {
            let s0 = x + coefficient * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coefficient * s1 * s2
    }

    #[test]
    fn european_ringback_cadence_and_headers() {
        let stream = RtpStream::new(G711::ALaw, 0x1234_5678, 65_530, 1_000);
        let mut tone = ToneGenerator::new(&ToneSpec::ringback_europe(), stream);
        let packets: Vec<Bytes> = (0..500).map(|_| tone.next_packet()).collect();
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(p.len(), 172);
            let h = RtpHeader::parse(p).unwrap();
            assert_eq!(h.payload_type, 8);
            assert_eq!(h.ssrc, 0x1234_5678);
            assert_eq!(h.sequence, 65_530u16.wrapping_add(i as u16));
            assert_eq!(h.timestamp, 1_000 + 160 * i as u32);
            assert_eq!(h.marker, i == 0);
        }
        let decode = |p: &Bytes| -> Vec<f64> {
            p[12..]
                .iter()
                .map(|&c| f64::from(alaw_to_linear(c)))
                .collect()
        };
        // 1 s on = packets 0..50, then 4 s of silence, then on again at packet 250.
        for i in [0, 25, 49, 250, 299] {
            let block = decode(&packets[i]);
            assert!(
                power(&block, 425.0) > 1_000.0 * power(&block, 1_000.0),
                "packet {i}"
            );
        }
        for i in [50, 100, 249, 300] {
            assert!(packets[i][12..].iter().all(|&c| c == 0xD5), "packet {i}");
        }
        // -10 dBm0: peak about 32124 * 10^(-13.17/20) ≈ 7,070.
        let peak = (0..50)
            .flat_map(|i| decode(&packets[i]))
            .fold(0.0f64, |m, x| m.max(x.abs()));
        assert!((6_500.0..7_600.0).contains(&peak), "peak {peak}");
    }

    fn wav(format: u16, bits: u16, rate: u32, data: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(b"RIFF");
        f.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        f.extend_from_slice(b"WAVEfmt ");
        f.extend_from_slice(&16u32.to_le_bytes());
        f.extend_from_slice(&format.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * u32::from(bits) / 8).to_le_bytes());
        f.extend_from_slice(&(bits / 8).to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f.extend_from_slice(b"data");
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn wav_files_become_g711_in_the_legs_law() {
        let pcm: Vec<u8> = [0i16, 1000, -1000, i16::MAX]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            wav_to_g711(&wav(1, 16, 8_000, &pcm), G711::MuLaw).unwrap(),
            Bytes::from_static(&[0xFF, 0xCE, 0x4E, 0x80])
        );
        // µ-law file played to an A-law leg: transcoded.
        assert_eq!(
            wav_to_g711(&wav(7, 8, 8_000, &[0xFF, 0x80]), G711::ALaw).unwrap(),
            Bytes::from_static(&[0xD5, 0xAA])
        );
        assert_eq!(
            wav_to_g711(&wav(6, 8, 8_000, &[0xD5]), G711::ALaw).unwrap(),
            Bytes::from_static(&[0xD5])
        );
        assert!(matches!(
            wav_to_g711(&wav(1, 16, 44_100, &pcm), G711::MuLaw),
            Err(WavError::Unsupported {
                sample_rate: 44_100,
                ..
            })
        ));
        assert!(matches!(
            wav_to_g711(b"RIFF\0\0\0\0WAVEdata\xff\0\0\0", G711::MuLaw),
            Err(WavError::Malformed(_))
        ));
        assert!(wav_to_g711(b"not a wav", G711::MuLaw).is_err());
    }

    #[test]
    fn player_loops_the_audio() {
        let audio = Bytes::from((0..=99u8).collect::<Vec<_>>());
        let mut player = G711Player::new(audio, RtpStream::new(G711::MuLaw, 1, 0, 0));
        let first = player.next_packet();
        let second = player.next_packet();
        assert_eq!(first[12], 0);
        assert_eq!(first[12 + 100], 0, "wrapped after 100 samples");
        assert_eq!(second[12], 60);
        assert_eq!(RtpHeader::parse(&second).unwrap().payload_type, 0);
    }
}
