//! Test support: the pieces of SIPp scenario XML that the trunk ([`super::sipp`]), the SIPp agent
//! phones ([`super::sipp_phone`]) and the direct-media tests all use: responses to the last request
//! received (RFC 3261 §8.2.6), our usual SDP (PCMA and telephone-event, RFC 4566 / RFC 4733), and the
//! trunk taking or refusing a re-INVITE (RFC 3261 §14).
//!
//! Each builder returns the exact lines SIPp reads, indented as in a scenario file, so pieces can be
//! concatenated into [`super::sipp::TrunkCall::after_answer`] or a whole scenario.

/// `200 OK` to the last request received, without a body (BYE, CANCEL, OPTIONS, …).
pub const OK_LAST: &str = r#"  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"#;

/// Takes the ACK to the response just sent.
pub const RECV_ACK: &str = "  <recv request=\"ACK\"/>\n";

/// Our SDP body lines (PCMA and telephone-event on `port`, 20 ms packets): origin `o={origin}
/// {version} …` (`trunk 53655765`, `phone 1`), then `a={direction}` when given.
pub fn sdp(origin: &str, version: u64, port: &str, direction: Option<&str>) -> String {
    let direction = direction.map_or_else(String::new, |d| format!("      a={d}\n"));
    format!(
        "      v=0
      o={origin} {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {port} RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
{direction}"
    )
}

/// The trunk's SDP with this origin version, on sipp's media port.
pub fn trunk_sdp(version: u64, direction: Option<&str>) -> String {
    sdp("trunk 53655765", version, "[media_port]", direction)
}

/// A SIPp phone's SDP with this origin version, on sipp's media port.
pub fn phone_sdp(version: u64, direction: Option<&str>) -> String {
    sdp("phone 1", version, "[media_port]", direction)
}

/// A response `status` (`488 Not Acceptable Here`, `491 Request Pending`) to the last request,
/// without a body.
pub fn reply(status: &str) -> String {
    OK_LAST.replace("200 OK", status)
}

/// `200 OK` to the last request with `body` as SDP; `contact` is the Contact user (`trunk`,
/// `agent`), `headers` extra header lines (each indented and ending in a newline), or "".
pub fn ok_last_with_sdp(contact: &str, headers: &str, body: &str) -> String {
    format!(
        r#"  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{contact}@[local_ip]:[local_port]>
{headers}      Content-Type: application/sdp
      Content-Length: [len]

{body}    ]]>
  </send>
"#
    )
}

/// Waits (at most `timeout_ms`) for an in-dialog `method`; each check is (regular expression,
/// where to search: `body`, `msg`, …, variable it is assigned to): the scenario fails when it does
/// not match. The variables must be named in a `<Reference variables=…/>`.
pub fn recv_request(method: &str, timeout_ms: u64, checks: &[(&str, &str, &str)]) -> String {
    if checks.is_empty() {
        return format!("  <recv request=\"{method}\" timeout=\"{timeout_ms}\"/>\n");
    }
    let checks: String = checks
        .iter()
        .map(|(regexp, search_in, var)| {
            format!(
                "      <ereg regexp=\"{regexp}\" search_in=\"{search_in}\" check_it=\"true\" assign_to=\"{var}\"/>\n"
            )
        })
        .collect();
    format!(
        "  <recv request=\"{method}\" timeout=\"{timeout_ms}\">\n    <action>\n{checks}    </action>\n  </recv>\n"
    )
}

/// The trunk takes our re-INVITE (within 10 s) and answers with its own media address.
pub fn trunk_accepts_reinvite() -> String {
    recv_request("INVITE", 10_000, &[])
        + &ok_last_with_sdp("trunk", "", &trunk_sdp(2353687638, None))
        + RECV_ACK
}

/// The trunk accepts a re-INVITE whose offer says `a={offered}` (checked into `var`), answering
/// `a={answered}` on sipp's media port.
pub fn trunk_accepts(offered: &str, answered: &str, var: &str) -> String {
    recv_request("INVITE", 10_000, &[(&format!("a={offered}"), "body", var)])
        + &ok_last_with_sdp("trunk", "", &trunk_sdp(2353687639, Some(answered)))
        + RECV_ACK
        + &format!("  <Reference variables=\"{var}\"/>\n")
}

/// The trunk refuses our re-INVITE (within 10 s) with `status` (`488 Not Acceptable Here`, or
/// `491 Request Pending` for glare, RFC 3261 §14.1).
pub fn trunk_refuses_reinvite(status: &str) -> String {
    recv_request("INVITE", 10_000, &[]) + &reply(status) + RECV_ACK
}
