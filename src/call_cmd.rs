//! `veilig-bellen call`: place one call with our own SIP/RTP stack, key in a link code, and say
//! what happened — so trying an install needs no softphone.
//!
//! ```text
//! veilig-bellen call sip:+31850000000@127.0.0.1:5060 --code 12345678 [--rfc4733|--info|--inband]
//!     [--wav FILE] [--from NUMBER] [--hold SECONDS | --stay] [--timeout SECONDS]
//!     [--code-delay MS] [--user NAME --password SECRET]
//! ```
//!
//! Prints one line per step on stdout as it happens (calling, ringing, answered after N ms, code
//! sent by METHOD, audio heard and how loud, who hung up) and a `result:` line. The code itself is
//! never printed, only its length. Ctrl-C hangs up cleanly (CANCEL before the answer, BYE after).
//!
//! Exit codes: 0 the call went through (answered and the whole code sent — whether the server
//! *verified* the code shows in its call list, not here); 1 it did not (refused, no answer, no
//! response, the code could not be sent, hung up before the answer) or the network failed;
//! 2 bad input (URI, code, number, WAV file, arguments).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};
use tokio::sync::{mpsc, oneshot};

use crate::cli::{exit, LogFormat};
use crate::pii::Pii;
use crate::softphone::caller::{
    place_call, CallEvent, CallOptions, CallReport, CodeMethod, Credentials, HangUp, DEFAULT_FROM,
};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("method").args(["rfc4733", "info", "inband"])))]
pub struct CallArgs {
    /// Whom to call: sip:NUMBER@HOST[:PORT] (over UDP; port 5060 when absent).
    #[arg(value_name = "sip:NUMBER@HOST[:PORT]")]
    pub uri: String,
    /// The link code to key in: the digits 0-9, *, #, A-D. Never printed.
    #[arg(long, value_name = "DIGITS", value_parser = parse_code_arg)]
    pub code: Pii<String>,
    /// Send the code as RFC 4733 telephone-events (the default).
    #[arg(long)]
    pub rfc4733: bool,
    /// Send the code as SIP INFO requests (application/dtmf-relay), one per digit.
    #[arg(long)]
    pub info: bool,
    /// Send the code as DTMF tones in the audio.
    #[arg(long)]
    pub inband: bool,
    /// Play this recording (WAV; other rates are resampled to 8 kHz) instead of silence.
    #[arg(long, value_name = "FILE")]
    pub wav: Option<PathBuf>,
    /// The calling number (caller id).
    #[arg(long, value_name = "NUMBER", default_value = DEFAULT_FROM)]
    pub from: String,
    /// Stay on this long after the code is sent, then hang up.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub hold: Duration,
    /// Stay on until the far end hangs up (or Ctrl-C), instead of --hold.
    #[arg(long, conflicts_with = "hold")]
    pub stay: bool,
    /// Give up when the call is not answered within this time.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Wait this long after the answer before the first digit.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub code_delay: u64,
    /// SIP account name, if the far end asks for one (401/407).
    #[arg(long, value_name = "NAME", requires = "password")]
    pub user: Option<String>,
    /// SIP account password.
    #[arg(long, value_name = "SECRET", requires = "user", value_parser = parse_secret)]
    pub password: Option<Pii<String>>,
}

impl CallArgs {
    fn method(&self) -> CodeMethod {
        if self.info {
            CodeMethod::Info
        } else if self.inband {
            CodeMethod::InBand
        } else {
            CodeMethod::Rfc4733
        }
    }
}

/// Runs the command; returns the exit code.
pub fn run(args: CallArgs, log: LogFormat) -> u8 {
    // Warnings only unless `RUST_LOG` says otherwise: stdout is the report.
    crate::cli::init_logging(log, "warn");
    let audio = match &args.wav {
        Some(path) => match crate::audio_file::read_prompt(path) {
            Ok(samples) => Some(samples),
            Err(e) => {
                eprintln!("veilig-bellen call: {}: {e}", path.display());
                return exit::INPUT;
            }
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("veilig-bellen call: starting the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    runtime.block_on(call(args, audio))
}

async fn call(args: CallArgs, audio: Option<std::sync::Arc<[i16]>>) -> u8 {
    let method = args.method();
    let digits = args.code.expose().chars().count();
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let (hang_up_tx, hang_up_rx) = oneshot::channel();
    let mut options = CallOptions::new(args.uri.clone(), args.code.clone());
    options.method = method;
    options.from = args.from.clone();
    options.audio = audio;
    options.hang_up = if args.stay {
        HangUp::WhenFarEndDoes
    } else {
        HangUp::After(args.hold)
    };
    options.answer_timeout = args.timeout;
    options.code_delay = Duration::from_millis(args.code_delay);
    options.credentials = match (&args.user, &args.password) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => None,
    };
    options.progress = Some(progress_tx);
    options.hang_up_signal = Some(hang_up_rx);

    let intro = format!(
        "calling {} from {} (code {}, {digits} digits, by {})",
        args.uri,
        args.from,
        "•".repeat(digits),
        method.label()
    );
    let printer = tokio::spawn(async move {
        while let Some(event) = progress_rx.recv().await {
            if let CallEvent::Dialling { to } = event {
                println!("{intro}: INVITE sent to {to}");
            } else if let Some(line) = describe(&event) {
                println!("{line}");
            }
        }
    });
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            println!("Ctrl-C: hanging up");
            let _ = hang_up_tx.send(());
        }
    });
    let result = place_call(options).await;
    ctrl_c.abort();
    let _ = printer.await;
    match result {
        Ok(report) => {
            println!("result: {}", summary(&report));
            if report.went_through() {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        Err(e) => {
            eprintln!("veilig-bellen call: {e}");
            if e.is_bad_input() {
                exit::INPUT
            } else {
                exit::FAILURE
            }
        }
    }
}

/// One line for an event (`None` for events the summary covers).
fn describe(event: &CallEvent) -> Option<String> {
    Some(match event {
        CallEvent::Dialling { to } => format!("INVITE sent to {to}"),
        CallEvent::Authenticating { status } => {
            format!("asked for a SIP account ({status}): answering the challenge")
        }
        CallEvent::Ringing { status } => format!("ringing ({status})"),
        CallEvent::Answered { after, codec } => {
            format!("answered after {} ms ({codec})", after.as_millis())
        }
        CallEvent::CodeSent { digits, method } => {
            format!("code sent: {digits} digits by {}", method.label())
        }
        CallEvent::AudioHeard { level_dbfs } => format!("audio heard ({level_dbfs:.1} dBFS)"),
        CallEvent::Ended { by, after } => {
            format!("hung up by the {by} after {:.1} s", after.as_secs_f64())
        }
        CallEvent::Failed(failure) => format!("failed: {failure}"),
    })
}

/// The `result:` line.
fn summary(report: &CallReport) -> String {
    let audio = if report.audio.heard {
        format!(
            "audio heard (loudest {:.1} dBFS, mean {:.1} dBFS)",
            report.audio.loudest_dbfs, report.audio.mean_heard_dbfs
        )
    } else if report.audio.frames_received > 0 {
        format!(
            "only silence heard ({} frames)",
            report.audio.frames_received
        )
    } else {
        "no audio received".to_owned()
    };
    if report.went_through() {
        let code = match report.code_sent {
            Some((n, method)) => format!("{n} digits sent by {}", method.label()),
            None => "no code".to_owned(),
        };
        let ended = match (report.ended_by, report.connected_for) {
            (Some(by), Some(after)) => {
                format!(", hung up by the {by} after {:.1} s", after.as_secs_f64())
            }
            _ => String::new(),
        };
        format!(
            "the call went through: answered, {code}, {audio}{ended}. Whether the code was \
             verified shows in the server's call list (agents' portal or GET /api/v1/calls)."
        )
    } else {
        let why = match (&report.failure, report.answered_after) {
            (Some(f), _) => f.to_string(),
            (None, Some(_)) => "hung up before the whole code was sent".to_owned(),
            (None, None) => "not answered".to_owned(),
        };
        format!("the call did not go through: {why}; {audio}")
    }
}

fn parse_code_arg(s: &str) -> Result<Pii<String>, String> {
    if s.is_empty() {
        return Err("the code is empty".into());
    }
    match crate::softphone::caller::parse_code(s) {
        Some(_) => Ok(Pii::new(s.to_owned())),
        None => Err("the code may only hold the digits 0-9, *, # and A-D".into()),
    }
}

fn parse_secret(s: &str) -> Result<Pii<String>, String> {
    Ok(Pii::new(s.to_owned()))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a duration in seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: CallArgs,
    }

    fn parse(args: &[&str]) -> Result<CallArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("call").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn defaults_and_methods() {
        let a = parse(&["sip:1@127.0.0.1", "--code", "90817263"]).unwrap();
        assert_eq!(a.method(), CodeMethod::Rfc4733);
        assert_eq!(a.hold, Duration::from_secs(10));
        assert_eq!(a.from, DEFAULT_FROM);
        assert!(
            !format!("{a:?}").contains("90817263"),
            "the code is redacted"
        );
        let a = parse(&["sip:1@h", "--code", "1", "--info", "--hold", "2.5"]).unwrap();
        assert_eq!(a.method(), CodeMethod::Info);
        assert_eq!(a.hold, Duration::from_millis(2500));
        assert_eq!(
            parse(&["sip:1@h", "--code", "1", "--inband"])
                .unwrap()
                .method(),
            CodeMethod::InBand
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["sip:1@h"][..],
            &["sip:1@h", "--code", "12x4"],
            &["sip:1@h", "--code", ""],
            &["sip:1@h", "--code", "1", "--info", "--inband"],
            &["sip:1@h", "--code", "1", "--hold", "-1"],
            &["sip:1@h", "--code", "1", "--hold", "3", "--stay"],
            &["sip:1@h", "--code", "1", "--user", "u"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn summaries_say_what_happened() {
        let mut r = CallReport {
            answered_after: Some(Duration::from_millis(20)),
            code_digits: 8,
            code_sent: Some((8, CodeMethod::Info)),
            ..CallReport::default()
        };
        assert!(
            summary(&r).starts_with("the call went through: answered, 8 digits sent by SIP INFO")
        );
        r.code_sent = None;
        assert!(summary(&r).contains("did not go through: hung up before the whole code"));
    }
}
