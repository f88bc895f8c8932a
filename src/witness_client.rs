//! Asking witnesses to cosign a checkpoint before it is sealed
//! (<https://c2sp.org/tlog-witness>): `--witness VKEY=URL` on `publish`,
//! `seal` and `keys rotate`.
//!
//! Each witness is sent `POST <URL>/add-checkpoint` with the size of the
//! last seal (the tree it most likely cosigned), the consistency proof from
//! it and the signed checkpoint, all at once. A witness that holds another
//! size answers 409 with it, and is asked once more with a proof from that
//! size. Every returned cosignature is verified with the witness's key
//! before it is embedded; fewer valid ones than `--witness-threshold`
//! (default: every witness) fail the publish, naming each witness that
//! failed and why, and nothing is sealed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use dare_container::CosignRequest;
use dare_container::cosign::{AddCheckpoint, MAX_COSIGNATURE_RESPONSE_SIZE, WitnessKey, parse_cosignature_lines};
use dare_container::note::NoteSignature;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long to wait for a witness to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `add-checkpoint` exchange may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The hint every failed cosigning prints: what a witness that did cosign
/// now holds, and how to publish without looking like a fork to it.
pub const ADVANCED_WITNESS_HINT: &str = "nothing was published. A witness that did cosign has moved to the new \
     tree: publishing this same release again (same version, channel and files) builds the same tree, which it \
     cosigns again; a different release would look like a fork to it";

/// The `--witness` flags of the commands that seal.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WitnessArgs {
    /// A witness to cosign the new checkpoint before the seal is written:
    /// its verifier key (`name+hexid+base64`, or a file holding it, as
    /// `dare keygen --witness` writes KEY.pub), `=`, and its URL (the
    /// request goes to URL/add-checkpoint). Repeat for several witnesses.
    #[arg(long = "witness", value_name = "VKEY=URL")]
    pub witness: Vec<String>,
    /// How many witnesses must cosign (default: every --witness). With
    /// fewer, nothing is sealed.
    #[arg(long, value_name = "K", requires = "witness")]
    pub witness_threshold: Option<usize>,
}

/// One witness: its key and where its `add-checkpoint` endpoint is.
#[derive(Clone, Debug)]
pub struct Witness {
    /// The verifier key of its cosignatures.
    pub key: WitnessKey,
    /// The URL of its `add-checkpoint` endpoint.
    pub endpoint: String,
}

impl WitnessArgs {
    /// The cosigner the flags ask for, or `None` without `--witness`.
    pub fn cosigner(&self) -> Result<Option<WitnessCosigner>> {
        if self.witness.is_empty() {
            return Ok(None);
        }
        let witnesses = self.witness.iter().map(|w| parse_witness(w)).collect::<Result<Vec<_>>>()?;
        for (i, w) in witnesses.iter().enumerate() {
            if witnesses[..i].iter().any(|p| p.key == w.key) {
                bail!("--witness {}: the same witness key is given twice", w.key);
            }
        }
        let threshold = self.witness_threshold.unwrap_or(witnesses.len());
        if threshold == 0 || threshold > witnesses.len() {
            bail!(
                "--witness-threshold {threshold}: must be between 1 and the number of --witness ({})",
                witnesses.len()
            );
        }
        Ok(Some(WitnessCosigner { witnesses, threshold, cosigned: 0 }))
    }
}

/// `VKEY=URL`: the key (text or file) before the `=` that starts the URL.
fn parse_witness(arg: &str) -> Result<Witness> {
    let split = arg
        .match_indices('=')
        .map(|(i, _)| i)
        .find(|&i| arg[i + 1..].starts_with("http://") || arg[i + 1..].starts_with("https://"));
    let Some(i) = split else {
        bail!("--witness {arg}: expected VKEY=URL with an http:// or https:// URL");
    };
    let (vkey, url) = (&arg[..i], &arg[i + 1..]);
    let key = load_witness_key(vkey)?;
    let uri: hyper::Uri = url.parse().with_context(|| format!("--witness {url}: not a URL"))?;
    if uri.host().is_none() {
        bail!("--witness {url}: the URL has no host");
    }
    let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
    Ok(Witness { key, endpoint })
}

/// A witness verifier key given as its text (`name+hexid+base64`) or as a
/// file holding it.
pub fn load_witness_key(arg: &str) -> Result<WitnessKey> {
    match WitnessKey::parse(arg.trim()) {
        Ok(k) => Ok(k),
        Err(direct) => {
            let path = PathBuf::from(arg);
            if !path.is_file() {
                return Err(anyhow::Error::new(direct)
                    .context(format!("--witness {arg}: neither a witness verifier key nor a file")));
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            WitnessKey::parse(text.trim()).with_context(|| format!("--witness {}", path.display()))
        }
    }
}

/// Collects cosignatures from witnesses for [`dare_publisher::publish_cosigned`]
/// and [`dare_publisher::seal_cosigned`].
#[derive(Debug)]
pub struct WitnessCosigner {
    witnesses: Vec<Witness>,
    threshold: usize,
    cosigned: usize,
}

/// What one witness answered.
enum Answer {
    /// Verified cosignature lines.
    Cosigned(Vec<NoteSignature>),
    /// 409: it holds another tree size.
    HoldsSize(u64),
    /// Anything else: why it did not cosign.
    Failed(String),
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

impl WitnessCosigner {
    /// How many witnesses cosigned the last checkpoint.
    pub fn cosigned(&self) -> usize {
        self.cosigned
    }

    /// The cosignature lines of the checkpoint `req`, from at least the
    /// threshold of witnesses, each verified; else an error naming every
    /// witness that failed and why.
    pub fn cosign(&mut self, req: &CosignRequest<'_>) -> Result<Vec<NoteSignature>, dare_container::Error> {
        let refused = dare_container::Error::Refused;
        let note = req.note_bytes();
        let text = req.note().text().to_owned();
        let n = self.witnesses.len();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| refused(format!("starting the witness client: {e}")))?;
        let client = http_client().map_err(refused)?;
        let first_old = req.previous_size();
        let first_body =
            AddCheckpoint { old_size: first_old, proof: req.consistency_proof(first_old)?, note: note.clone() }
                .to_bytes();
        let first = (0..n).map(|i| (i, first_body.clone())).collect();
        let mut answers = runtime.block_on(ask_all(&client, &self.witnesses, &text, first));
        // A witness holding another size (it cosigned a tree this publisher
        // did not seal, or missed one) is asked once more from its size.
        let mut retry = Vec::new();
        for (i, a) in answers.iter_mut().enumerate() {
            if let Answer::HoldsSize(size) = *a {
                if size > req.size() {
                    *a = Answer::Failed(format!(
                        "it holds a bigger tree of {size} leaves than this checkpoint's {}: it saw another \
                         history of this log (a fork)",
                        req.size()
                    ));
                    continue;
                }
                match req.consistency_proof(size) {
                    Ok(proof) => {
                        retry.push((i, AddCheckpoint { old_size: size, proof, note: note.clone() }.to_bytes()))
                    }
                    Err(e) => *a = Answer::Failed(format!("no consistency proof from its size {size}: {e}")),
                }
            }
        }
        if !retry.is_empty() {
            let which: Vec<usize> = retry.iter().map(|(i, _)| *i).collect();
            let again = runtime.block_on(ask_all(&client, &self.witnesses, &text, retry));
            for (i, a) in which.into_iter().zip(again) {
                answers[i] = match a {
                    Answer::HoldsSize(s) => Answer::Failed(format!("it answered 409 (holds size {s}) twice")),
                    other => other,
                };
            }
        }
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        for (w, a) in self.witnesses.iter().zip(answers) {
            match a {
                Answer::Cosigned(sigs) => lines.extend(sigs),
                Answer::Failed(why) => failures.push(format!("{} ({}): {why}", w.key.name(), w.endpoint)),
                Answer::HoldsSize(s) => failures.push(format!("{} ({}): holds size {s}", w.key.name(), w.endpoint)),
            }
        }
        let valid = n - failures.len();
        self.cosigned = valid;
        if valid < self.threshold {
            let hint = if valid > 0 { ADVANCED_WITNESS_HINT } else { "nothing was published" };
            return Err(refused(format!(
                "{valid} of {n} witnesses cosigned, {} required: {}; {hint}",
                self.threshold,
                failures.join("; ")
            )));
        }
        for f in &failures {
            tracing::warn!("witness did not cosign (threshold still met): {f}");
        }
        Ok(lines)
    }
}

/// Asks each `(witness index, body)` concurrently; the answers in the same order.
async fn ask_all(client: &HttpClient, witnesses: &[Witness], text: &str, asks: Vec<(usize, Vec<u8>)>) -> Vec<Answer> {
    let mut set = tokio::task::JoinSet::new();
    let count = asks.len();
    for (slot, (i, body)) in asks.into_iter().enumerate() {
        let (client, w, text) = (client.clone(), witnesses[i].clone(), text.to_owned());
        set.spawn(async move { (slot, ask(&client, &w, &text, body).await) });
    }
    let mut out: Vec<Option<Answer>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((slot, a)) = joined {
            out[slot] = Some(a);
        }
    }
    out.into_iter().map(|a| a.unwrap_or_else(|| Answer::Failed("the request task failed".into()))).collect()
}

fn http_client() -> Result<HttpClient, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(loaded.certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// One `add-checkpoint` exchange with `w`, bounded in time and size.
async fn ask(client: &HttpClient, w: &Witness, note_text: &str, body: Vec<u8>) -> Answer {
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange(client, w, note_text, body)).await {
        Ok(a) => a,
        Err(_) => Answer::Failed(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

async fn exchange(client: &HttpClient, w: &Witness, note_text: &str, body: Vec<u8>) -> Answer {
    let request = match Request::post(&w.endpoint).body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("bad request: {e}")),
    };
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("down or unreachable: {}", chain(&e))),
    };
    let status = response.status();
    let content_type =
        response.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = match Limited::new(response.into_body(), MAX_COSIGNATURE_RESPONSE_SIZE).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Answer::Failed(format!("HTTP {status}, reading its answer: {e}")),
    };
    match status {
        StatusCode::OK => match parse_cosignature_lines(&body) {
            Ok(sigs) => {
                let sigs: Vec<NoteSignature> =
                    sigs.into_iter().filter(|s| w.key.verify(note_text, s).is_some()).collect();
                if sigs.is_empty() {
                    Answer::Failed("bad signature: it answered no cosignature that verifies with its key".into())
                } else {
                    Answer::Cosigned(sigs)
                }
            }
            Err(e) => Answer::Failed(format!("bad answer: {e}")),
        },
        StatusCode::CONFLICT if content_type.starts_with("text/x.tlog.size") => {
            match std::str::from_utf8(&body).ok().and_then(|s| s.strip_suffix('\n')).and_then(|s| s.parse().ok()) {
                Some(size) => Answer::HoldsSize(size),
                None => Answer::Failed("answered 409 without a tree size".into()),
            }
        }
        // A 409 that names no size: the witness holds another tree of the
        // same size (dare witness says why in the body).
        StatusCode::CONFLICT => Answer::Failed(format!(
            "refused the checkpoint (409: {}): it cosigned another tree, a fork",
            snippet(&body)
        )),
        StatusCode::UNPROCESSABLE_ENTITY => Answer::Failed(
            "refused the consistency proof (422): this tree does not extend the one it cosigned, a fork".into(),
        ),
        StatusCode::FORBIDDEN => {
            Answer::Failed("refused the checkpoint's signature (403): it does not trust this log's key".into())
        }
        StatusCode::NOT_FOUND => Answer::Failed("does not know this log (404)".into()),
        StatusCode::BAD_REQUEST => Answer::Failed(format!("refused the request (400): {}", snippet(&body))),
        other => Answer::Failed(format!("answered HTTP {other}: {}", snippet(&body))),
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.trim().replace('\n', " ")
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
