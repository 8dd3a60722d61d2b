//! Test support: SIPp trunk steps for REFER (RFC 3515) — the trunk as transferee takes our REFER
//! (202), reports progress in NOTIFYs with `message/sipfrag` bodies, or refuses it. Plug into
//! [`super::sipp::TrunkCall::after_answer`] (with `after_answer_requests` = the NOTIFYs sent).

use super::server::TENANT_NUMBER;

/// The trunk answers our REFER with `status` (`202 Accepted`, `403 Forbidden`, …).
pub fn answer_refer(status: &str) -> String {
    format!(
        r#"  <recv request="REFER" timeout="10000"/>
  <send>
    <![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Content-Length: 0
    ]]>
  </send>
"#
    )
}

/// A NOTIFY of the REFER subscription with CSeq `cseq` carrying `sipfrag` (`100 Trying`, `200 OK`);
/// a final status ends the subscription. `caller` is the From user of the trunk's INVITE.
pub fn notify(caller: &str, cseq: u32, sipfrag: &str) -> String {
    let code: u16 = sipfrag
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let state = if code >= 200 {
        "terminated;reason=noresource"
    } else {
        "active;expires=60"
    };
    format!(
        r#"  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[
      NOTIFY sip:veilig-bellen@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{TENANT_NUMBER}@[remote_ip]:[remote_port]>;tag=[$peer_tag]
      Call-ID: [call_id]
      CSeq: {cseq} NOTIFY
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Event: refer
      Subscription-State: {state}
      Content-Type: message/sipfrag;version=2.0
      Content-Length: [len]

      SIP/2.0 {sipfrag}
    ]]>
  </send>
  <recv response="200"/>
"#
    )
}

/// The whole successful transfer: 202, NOTIFY 100, NOTIFY 200 (two requests, CSeq 2 and 3).
pub fn transfer_succeeds(caller: &str) -> String {
    answer_refer("202 Accepted") + &notify(caller, 2, "100 Trying") + &notify(caller, 3, "200 OK")
}

/// The `Refer-To` header value of the REFER the trunk received, if any.
pub fn refer_to(messages: &str) -> Option<String> {
    messages
        .lines()
        .find_map(|l| l.strip_prefix("Refer-To:").map(|v| v.trim().to_owned()))
}
