//! SPDY/3.1 framing, as far as the kubelet's streaming endpoints need it: the API server
//! (and `kubectl port-forward`, whose WebSocket tunnel carries SPDY end to end) talks to
//! a kubelet in SPDY after an `Upgrade: SPDY/3.1`. Implements the frames of the SPDY/3
//! draft (§2.2 data, §2.6 control) that Kubernetes' `spdystream` sends: SYN_STREAM,
//! SYN_REPLY, RST_STREAM, PING, GOAWAY, DATA; SETTINGS, HEADERS and WINDOW_UPDATE are read
//! and ignored (`spdystream` does no flow control, so neither do we).
//!
//! Header blocks are zlib streams, one per direction and connection, that the peer may
//! prime with the SPDY/3 dictionary (§2.6.10.1). What we send is compressed without a
//! dictionary: a zlib reader takes both.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The protocol name in `Upgrade:`.
pub const UPGRADE: &str = "SPDY/3.1";

/// A frame's FIN flag (data and SYN frames): the sender's half of the stream ends.
pub const FLAG_FIN: u8 = 0x01;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
/// Frames are at most 2^24-1 bytes long; larger payloads are refused before allocation.
const MAX_FRAME: usize = (1 << 24) - 1;

/// RST_STREAM status codes (SPDY/3 §2.6.2) that we send.
pub mod status {
    /// The stream is not valid here (e.g. headers missing).
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The stream was cancelled.
    pub const CANCEL: u32 = 5;
}

/// Headers of a stream: names in lower case; a value may hold several, NUL-separated.
pub type Headers = Vec<(String, String)>;

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A new stream from the peer.
    SynStream {
        /// Stream id (odd from a client).
        id: u32,
        /// The peer sends nothing on it.
        fin: bool,
        /// Its headers.
        headers: Headers,
    },
    /// The answer to a SYN_STREAM.
    SynReply {
        /// Stream id.
        id: u32,
        /// We send nothing more on it.
        fin: bool,
        /// Its headers.
        headers: Headers,
    },
    /// Stream data.
    Data {
        /// Stream id.
        id: u32,
        /// The sender's last frame on this stream.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The stream ends abruptly.
    RstStream {
        /// Stream id.
        id: u32,
        /// Why (§2.6.2).
        status: u32,
    },
    /// A liveness check; the receiver echoes it.
    Ping(u32),
    /// The sender opens no more streams.
    GoAway {
        /// The last stream it accepted.
        last: u32,
        /// Why.
        status: u32,
    },
    /// A frame we read and ignore (SETTINGS, HEADERS, WINDOW_UPDATE, NOOP).
    Ignored(u16),
}

/// What is wrong with the peer's bytes.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The connection failed or ended.
    #[error("spdy connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame that does not parse.
    #[error("spdy frame: {0}")]
    Frame(String),
    /// A header block that does not decompress.
    #[error("spdy header block: {0}")]
    Headers(String),
}

/// The SPDY/3 header dictionary (§2.6.10.1): length-prefixed words, then a plain tail.
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8",
        "charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

/// Reads frames from one connection (owns the inbound header-decompression context).
pub struct Reader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader on `io`.
    pub fn new(io: R) -> Self {
        Self {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; an error ends the connection.
    pub async fn next(&mut self) -> Result<Frame, SpdyError> {
        let mut head = [0u8; 8];
        self.io.read_exact(&mut head).await?;
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len.min(MAX_FRAME)];
        self.io.read_exact(&mut body).await?;
        if word & 0x8000_0000 == 0 {
            let id = word & 0x7fff_ffff;
            if id == 0 {
                return Err(SpdyError::Frame("data frame on stream 0".into()));
            }
            return Ok(Frame::Data {
                id,
                fin: flags & FLAG_FIN != 0,
                data: body,
            });
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Frame(format!("version {version}, not 3")));
        }
        let kind = (word & 0xffff) as u16;
        let u32_at = |i: usize| -> Result<u32, SpdyError> {
            body.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| SpdyError::Frame(format!("control frame {kind} too short")))
        };
        let fin = flags & FLAG_FIN != 0;
        Ok(match kind {
            SYN_STREAM => {
                let id = u32_at(0)? & 0x7fff_ffff;
                let block = body.get(10..).unwrap_or_default();
                let headers = self.headers(block)?;
                Frame::SynStream { id, fin, headers }
            }
            SYN_REPLY => {
                let id = u32_at(0)? & 0x7fff_ffff;
                let block = body.get(4..).unwrap_or_default();
                let headers = self.headers(block)?;
                Frame::SynReply { id, fin, headers }
            }
            RST_STREAM => Frame::RstStream {
                id: u32_at(0)? & 0x7fff_ffff,
                status: u32_at(4)?,
            },
            PING => Frame::Ping(u32_at(0)?),
            GOAWAY => Frame::GoAway {
                last: u32_at(0)? & 0x7fff_ffff,
                status: u32_at(4).unwrap_or(0),
            },
            other => {
                // HEADERS carry compressed headers too: they must pass through the
                // decompressor, or the shared zlib context goes out of step.
                if other == 8 {
                    self.headers(body.get(4..).unwrap_or_default())?;
                }
                Frame::Ignored(other)
            }
        })
    }

    /// Decompresses one header block (a sync-flushed piece of the connection's zlib
    /// stream) and parses it (§2.6.10).
    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity());
            }
            let (in0, out0) = (self.inflate.total_in(), out.len());
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - in0) as usize..];
            match r {
                Ok(Status::StreamEnd) => break,
                // All input taken and room left over: everything it held is out.
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) if self.inflate.total_in() == in0 && out.len() == out0 => {
                    return Err(SpdyError::Headers("no progress".into()));
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&dictionary())
                        .map_err(|e| SpdyError::Headers(format!("dictionary: {e}")))?;
                }
                Err(e) => return Err(SpdyError::Headers(e.to_string())),
            }
        }
        parse_block(&out)
    }
}

/// Parses a decompressed header block: a count, then (name, value) pairs, each
/// length-prefixed (§2.6.10).
fn parse_block(b: &[u8]) -> Result<Headers, SpdyError> {
    let short = || SpdyError::Headers("header block too short".into());
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let s = b.get(pos..pos + n).ok_or_else(short)?;
        pos += n;
        Ok(s)
    };
    let n32 = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let count = n32(take(4)?);
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let nl = n32(take(4)?);
        let name = String::from_utf8_lossy(take(nl)?).to_lowercase();
        let vl = n32(take(4)?);
        let value = String::from_utf8_lossy(take(vl)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// The value of header `name` (the first one if NUL-separated).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(v.as_str()))
}

/// Encodes frames for one connection (owns the outbound header-compression context).
pub struct Writer {
    deflate: Compress,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// A new encoder.
    pub fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::fast(), true),
        }
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) {
        match frame {
            Frame::Data { id, fin, data } => {
                for (i, chunk) in data.chunks(MAX_FRAME).enumerate() {
                    let last = (i + 1) * MAX_FRAME >= data.len();
                    data_header(*id, *fin && last, chunk.len(), out);
                    out.extend_from_slice(chunk);
                }
                if data.is_empty() {
                    data_header(*id, *fin, 0, out);
                }
            }
            Frame::SynReply { id, fin, headers } => {
                let block = self.compress(headers);
                control(SYN_REPLY, u8::from(*fin), 4 + block.len(), out);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Frame::SynStream { id, fin, headers } => {
                let block = self.compress(headers);
                control(SYN_STREAM, u8::from(*fin), 10 + block.len(), out);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&[0; 6]);
                out.extend_from_slice(&block);
            }
            Frame::RstStream { id, status } => {
                control(RST_STREAM, 0, 8, out);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Ping(id) => {
                control(PING, 0, 4, out);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway { last, status } => {
                control(GOAWAY, 0, 8, out);
                out.extend_from_slice(&last.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Ignored(_) => {}
        }
    }

    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (n, v) in headers {
            for s in [n.to_lowercase().as_bytes(), v.as_bytes()] {
                plain.extend_from_slice(&(s.len() as u32).to_be_bytes());
                plain.extend_from_slice(s);
            }
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = plain.as_slice();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity());
            }
            let before = self.deflate.total_in();
            // Sync flush: the block ends on a byte boundary, so the peer decodes it now.
            let r = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            let room_left = out.capacity() > out.len();
            if r.is_err() || (input.is_empty() && room_left) {
                break;
            }
        }
        out
    }
}

fn control(kind: u16, flags: u8, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
}

fn data_header(id: u32, fin: bool, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(b: &[u8]) -> u32 {
        let (mut a, mut s) = (1u32, 0u32);
        for x in b {
            a = (a + u32::from(*x)) % 65521;
            s = (s + a) % 65521;
        }
        (s << 16) | a
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        // Length and checksum of the dictionary in SPDY/3 §2.6.10.1 (a peer's zlib header
        // names it by this Adler-32).
        assert_eq!(d.len(), 1423);
        assert_eq!(adler32(&d), 0xe3c6_a7c2);
    }

    /// A peer that primes its compressor with the dictionary, as spdystream does.
    fn dict_compressor() -> Compress {
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(&dictionary()).expect("dictionary");
        c
    }

    fn syn_stream_bytes(c: &mut Compress, id: u32, headers: &Headers) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (n, v) in headers {
            for s in [n.as_bytes(), v.as_bytes()] {
                plain.extend_from_slice(&(s.len() as u32).to_be_bytes());
                plain.extend_from_slice(s);
            }
        }
        let mut block = Vec::with_capacity(4096);
        c.compress_vec(&plain, &mut block, FlushCompress::Sync)
            .expect("compress");
        let mut out = Vec::new();
        control(SYN_STREAM, 0, 10 + block.len(), &mut out);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&block);
        out
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn reads_dictionary_compressed_streams_in_sequence() {
        let mut c = dict_compressor();
        let h1 = hdrs(&[
            ("streamtype", "error"),
            ("port", "8080"),
            ("requestid", "0"),
        ]);
        let h2 = hdrs(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]);
        let mut wire = syn_stream_bytes(&mut c, 1, &h1);
        wire.extend(syn_stream_bytes(&mut c, 3, &h2));
        let mut w = Writer::new();
        w.encode(
            &Frame::Data {
                id: 3,
                fin: true,
                data: b"GET".to_vec(),
            },
            &mut wire,
        );
        w.encode(&Frame::Ping(7), &mut wire);
        let mut r = Reader::new(wire.as_slice());
        assert_eq!(
            r.next().await.expect("frame"),
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: h1
            }
        );
        let Frame::SynStream { id: 3, headers, .. } = r.next().await.expect("frame") else {
            panic!("not the second stream");
        };
        assert_eq!(header(&headers, "streamType"), Some("data"));
        assert_eq!(
            r.next().await.expect("frame"),
            Frame::Data {
                id: 3,
                fin: true,
                data: b"GET".to_vec()
            }
        );
        assert_eq!(r.next().await.expect("frame"), Frame::Ping(7));
        assert!(r.next().await.is_err(), "end of input is an error");
    }

    #[tokio::test]
    async fn what_we_write_reads_back() {
        let mut w = Writer::new();
        let mut wire = Vec::new();
        for id in [1u32, 3, 5] {
            w.encode(
                &Frame::SynReply {
                    id,
                    fin: false,
                    headers: vec![],
                },
                &mut wire,
            );
        }
        w.encode(&Frame::RstStream { id: 5, status: 5 }, &mut wire);
        w.encode(&Frame::GoAway { last: 5, status: 0 }, &mut wire);
        let mut r = Reader::new(wire.as_slice());
        for id in [1u32, 3, 5] {
            assert_eq!(
                r.next().await.expect("frame"),
                Frame::SynReply {
                    id,
                    fin: false,
                    headers: vec![]
                }
            );
        }
        assert_eq!(
            r.next().await.expect("frame"),
            Frame::RstStream { id: 5, status: 5 }
        );
        assert_eq!(
            r.next().await.expect("frame"),
            Frame::GoAway { last: 5, status: 0 }
        );
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        for wire in [
            vec![0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0, 0],
            vec![0x80, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
            vec![0, 0, 0, 0, 0, 0, 0, 0],
            vec![
                0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ],
        ] {
            let mut r = Reader::new(wire.as_slice());
            assert!(r.next().await.is_err(), "{wire:?}");
        }
    }
}
