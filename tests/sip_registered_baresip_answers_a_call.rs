//! An agent's softphone (baresip, auto-answer) registers; the application looks up the agent's
//! binding and calls it through the driver's handle — the INVITE goes to the address the phone
//! registered from — and the phone answers 200 OK with SDP; we ACK and hang up with BYE (200).
//! This is the path the call flow uses to ring an agent.

use crate::support;

use std::time::Duration;

use sip::endpoint::{ClientTxId, Event, Target};
use sip::message::{HeaderName, Method, Request, Response};
use support::agent::{AgentPhone, Answer};
use support::sip_alone::*;
use veilig_bellen::sip_driver::{SipEvent, SipEvents};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phone_answers_when_called_at_its_registered_address() {
    let mut cfg = config();
    cfg.forward_requests = true;
    let mut server = start(cfg).await;
    let Some(phone) = AgentPhone::register(server.udp(), Answer::Auto).await else {
        return;
    };
    let result = call_the_agent(&mut server).await;
    let log = phone.log();
    phone.stop().await;
    if let Err(e) = result {
        panic!("{e}\nbaresip said:\n{log}");
    }
}

async fn call_the_agent(server: &mut Server) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let binding = loop {
        let b = server.sip.handle.lookup(AGENT).await.unwrap();
        if let Some(b) = b.into_iter().next() {
            break b;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("baresip did not register".into());
        }
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let target = Target {
        transport: binding.transport,
        addr: binding.target,
    };
    let us = server.udp();
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=vb 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    let call_id = format!("{:016x}@test", rand::random::<u64>());
    let aor = format!("<sip:{AGENT}@{us}>");
    let mut invite = Request::new(Method::Invite, binding.contact.uri.clone());
    invite.headers.push(
        HeaderName::From,
        "<sip:veilig-bellen@127.0.0.1>;tag=caller1",
    );
    invite.headers.push(HeaderName::To, aor.as_str());
    invite.headers.push(HeaderName::CallId, call_id.as_str());
    invite.headers.push(HeaderName::CSeq, "1 INVITE");
    invite
        .headers
        .push(HeaderName::Contact, format!("<sip:veilig-bellen@{us}>"));
    invite.set_body(Some("application/sdp"), sdp.into_bytes());
    let id = server
        .sip
        .handle
        .send_request(invite, target)
        .await
        .map_err(|e| e.to_string())?;
    let ok = final_response(&mut server.sip.events, id).await?;
    if ok.status.as_u16() != 200 {
        return Err(format!("INVITE answered {}: {ok:?}", ok.status.as_u16()));
    }
    let body = String::from_utf8_lossy(&ok.body).into_owned();
    if !(body.contains("PCMA/8000") || body.contains("PCMU/8000")) {
        return Err(format!("answer SDP has no G.711: {body}"));
    }
    let to = ok
        .headers
        .get(&HeaderName::To)
        .map(|t| t.to_string())
        .unwrap_or_default();
    if !to.contains("tag=") {
        return Err(format!("200 OK without To tag: {to}"));
    }
    let remote_target = ok
        .headers
        .contact()
        .ok()
        .and_then(|c| c.addr().map(|a| a.uri.clone()))
        .ok_or("200 OK without Contact")?;

    let mut ack = Request::new(Method::Ack, remote_target.clone());
    ack.headers.push(
        HeaderName::From,
        "<sip:veilig-bellen@127.0.0.1>;tag=caller1",
    );
    ack.headers.push(HeaderName::To, to.as_str());
    ack.headers.push(HeaderName::CallId, call_id.as_str());
    ack.headers.push(HeaderName::CSeq, "1 ACK");
    server
        .sip
        .handle
        .send_ack(ack, target)
        .await
        .map_err(|e| e.to_string())?;

    let mut bye = Request::new(Method::Bye, remote_target);
    bye.headers.push(
        HeaderName::From,
        "<sip:veilig-bellen@127.0.0.1>;tag=caller1",
    );
    bye.headers.push(HeaderName::To, to.as_str());
    bye.headers.push(HeaderName::CallId, call_id.as_str());
    bye.headers.push(HeaderName::CSeq, "2 BYE");
    let id = server
        .sip
        .handle
        .send_request(bye, target)
        .await
        .map_err(|e| e.to_string())?;
    let bye_ok = final_response(&mut server.sip.events, id).await?;
    if bye_ok.status.as_u16() != 200 {
        return Err(format!("BYE answered {}", bye_ok.status.as_u16()));
    }
    Ok(())
}

/// The final response to client transaction `id` (other events are skipped), within 10 s.
async fn final_response(events: &mut SipEvents, id: ClientTxId) -> Result<Response, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| "no final response within 10 s".to_string())?
            .ok_or("driver stopped")?;
        match ev {
            SipEvent::Endpoint(Event::Response { id: got, response })
                if got == id && response.status.as_u16() >= 200 =>
            {
                return Ok(response)
            }
            SipEvent::Endpoint(Event::Timeout { .. }) => return Err("transaction timed out".into()),
            _ => {}
        }
    }
}
