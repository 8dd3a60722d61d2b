#!/usr/bin/env python3
"""A scriptable agent phone on PJSIP (PyPI `pjsua2-python`, `import pjsua2`) for the integration
tests; driven by tests/support/pjsua.rs.

It registers one account at the registrar (digest auth) over UDP, TCP or TLS, answers or refuses
incoming calls, talks a WAV file (looped) into each call and records what it hears into a WAV file.
There is no sound card: the conference bridge runs on PJSIP's null audio device.

Input: one command per line on stdin. Output: one event per line on stdout (nothing else goes
there: PJSIP's log and Python's errors go to stderr). Every command is acknowledged with
`ok <command>` or `error <command>: <why>` after its own events.

Events
  ready <transport> <local SIP address>     transport up, account added (registration under way)
  registered <code>                         REGISTER got 2xx (after any digest challenge)
  unregistered <code>                       un-REGISTER answered
  registration failed <code> <reason>       REGISTER ended without 2xx (or did not go out: code 0)
  incoming <remote URI>                     an INVITE arrived (the one call this phone handles)
  busy <remote URI>                         another INVITE while a call lasts: refused with 486
  answered <status>                         we sent this final response to the INVITE
  call state <STATE> <last code> <reason>   CALLING EARLY CONNECTING CONFIRMED DISCONNECTED
  media active <codec>/<rate> <proto>       audio flows (e.g. `media active PCMU/8000 RTP/AVP`)
  media local-hold | remote-hold | none | error   the call's audio state otherwise
  srtp active <suite> | srtp inactive       after each `media active`: whether RTP is SRTP
  dtmf <digit>                              an RFC 4733 / INFO digit came from the far end
  stats rx <packets> tx <packets>           answer to `stats`: RTP packets of the call's audio
                                            stream (PJSIP makes a new one at every re-INVITE)
  recording closed <path>                   the call ended; the WAV file is complete
  quit                                      last line before the process exits

Commands
  answer [status]   answer the ringing call (default 200; >= 300 refuses it)
  ring              send 180 Ringing on the ringing call
  hold              put the call on hold (re-INVITE a=sendonly)
  unhold            take it off hold (re-INVITE a=sendrecv)
  hangup [status]   end the call (BYE, CANCEL, or that status if it is still ringing)
  dtmf <digits>     send digits (RFC 4733)
  stats             print a `stats` event
  register          REGISTER again; unregister: REGISTER with Expires: 0
  quit              hang up, unregister, exit

The process exits by itself after --limit seconds and when stdin closes.

PJSIP refuses some INVITEs before the application hears of them: an offer it cannot take (RTP/SAVP
while --srtp is disabled, which is PJSIP's default; RTP/AVP with --srtp mandatory) gets 488 with no
`incoming` event. Its log then says "Error initializing media channel".
"""

import argparse
import ctypes
import os
import queue
import re
import sys
import threading
import time

import pjsua2 as pj

STATES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local-hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote-hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}
PROTOS = {
    pj.PJMEDIA_TP_PROTO_RTP_AVP: "RTP/AVP",
    pj.PJMEDIA_TP_PROTO_RTP_SAVP: "RTP/SAVP",
    pj.PJMEDIA_TP_PROTO_RTP_AVPF: "RTP/AVPF",
    pj.PJMEDIA_TP_PROTO_RTP_SAVPF: "RTP/SAVPF",
}
SRTP = {
    "disabled": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}
TRANSPORTS = {
    "udp": pj.PJSIP_TRANSPORT_UDP,
    "tcp": pj.PJSIP_TRANSPORT_TCP,
    "tls": pj.PJSIP_TRANSPORT_TLS,
}


# Events go to the stdout we were given. PJSIP logs to C's stdout, which becomes stderr (fd 2),
# line-buffered so that a log read while the phone runs is whole up to the last line.
EVENTS = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
_libc = ctypes.CDLL(None)
_libc.setvbuf(ctypes.c_void_p.in_dll(_libc, "stdout"), None, 1, 0)  # 1: _IOLBF


def emit(line):
    """One event line on stdout, at once."""
    EVENTS.write(line + "\n")
    EVENTS.flush()


def parse_args():
    p = argparse.ArgumentParser(description="PJSIP agent phone for the veilig-bellen tests")
    p.add_argument("--registrar", required=True, help="host:port of the registrar")
    p.add_argument("--user", default="agent")
    p.add_argument("--password", required=True)
    p.add_argument("--transport", choices=sorted(TRANSPORTS), default="udp")
    p.add_argument("--tls-ca", help="CA (PEM) to verify the registrar's certificate with")
    p.add_argument(
        "--tls-no-verify",
        action="store_true",
        help="do not verify the registrar's certificate (a self-signed test certificate)",
    )
    p.add_argument("--sips", action="store_true", help="sips: URIs (TLS only)")
    p.add_argument("--srtp", choices=sorted(SRTP), help="SRTP use (PJSIP default: disabled)")
    p.add_argument(
        "--srtp-secure-signaling",
        type=int,
        choices=[0, 1, 2],
        help="0: SRTP over any transport, 1: needs TLS, 2: needs sips end to end "
        "(PJSIP default: 1)",
    )
    p.add_argument(
        "--auto-answer",
        type=int,
        metavar="STATUS",
        help="answer every call at once with this status (200; 486, 488, 603 refuse)",
    )
    p.add_argument("--vad", choices=["on", "off"], default="on", help="PJSIP default: on")
    p.add_argument("--play", help="WAV file talked into every call, looped")
    p.add_argument("--record", help="WAV file the call's audio is recorded to")
    p.add_argument(
        "--codecs",
        help="comma-separated codec ids in order of preference (e.g. PCMU/8000); "
        "all others are disabled",
    )
    p.add_argument("--rtp-port", type=int, default=0, help="first RTP port (even)")
    p.add_argument("--rtp-port-range", type=int, default=0, help="ports from --rtp-port on")
    p.add_argument("--expires", type=int, default=600)
    p.add_argument(
        "--log-level",
        type=int,
        default=5,
        help="PJSIP's log level on stderr (4 and up: every SIP message)",
    )
    p.add_argument("--limit", type=float, default=40.0, help="exit after this many seconds")
    return p.parse_args()


class Phone:
    """The endpoint, one account and at most one call; everything runs on the main thread."""

    def __init__(self, args):
        self.args = args
        self.call = None
        self.player = None
        self.recorder = None
        self.stale = []  # finished calls, released on the next loop turn (not in their callback)
        self.account = None

    def start(self):
        a = self.args
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # callbacks run in libHandleEvents on this thread
        cfg.uaConfig.mainThreadOnly = False
        cfg.logConfig.level = a.log_level
        cfg.logConfig.consoleLevel = a.log_level
        cfg.logConfig.msgLogging = a.log_level >= 4
        cfg.medConfig.noVad = a.vad == "off"
        cfg.medConfig.ecTailLen = 0
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        if a.codecs:
            wanted = [c.strip() for c in a.codecs.split(",") if c.strip()]
            known = {c.codecId: c for c in self.ep.codecEnum2()}
            for codec_id in known:
                self.ep.codecSetPriority(codec_id, 0)
            for i, codec_id in enumerate(wanted):
                match = [k for k in known if k.lower().startswith(codec_id.lower())]
                if not match:
                    raise SystemExit(f"unknown codec {codec_id}; PJSIP has {sorted(known)}")
                for k in match:
                    self.ep.codecSetPriority(k, 254 - i)

        tc = pj.TransportConfig()
        tc.boundAddress = "127.0.0.1"
        tc.port = 0
        if a.transport == "tls":
            tc.tlsConfig.verifyServer = not a.tls_no_verify
            if a.tls_ca:
                tc.tlsConfig.CaListFile = a.tls_ca
            elif not a.tls_no_verify:
                raise SystemExit("--transport tls needs --tls-ca or --tls-no-verify")
        elif a.sips:
            raise SystemExit("--sips needs --transport tls")
        tid = self.ep.transportCreate(TRANSPORTS[a.transport], tc)
        self.ep.libStart()

        scheme = "sips" if a.sips else "sip"
        param = "" if a.transport == "udp" or a.sips else f";transport={a.transport}"
        acfg = pj.AccountConfig()
        acfg.idUri = f"{scheme}:{a.user}@{a.registrar}"
        acfg.regConfig.registrarUri = f"{scheme}:{a.registrar}{param}"
        acfg.regConfig.timeoutSec = a.expires
        acfg.sipConfig.transportId = tid
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a.user, 0, a.password))
        mc = acfg.mediaConfig
        mc.transportConfig.boundAddress = "127.0.0.1"
        if a.rtp_port:
            mc.transportConfig.port = a.rtp_port
            mc.transportConfig.portRange = a.rtp_port_range
        if a.srtp:
            mc.srtpUse = SRTP[a.srtp]
        if a.srtp_secure_signaling is not None:
            mc.srtpSecureSignaling = a.srtp_secure_signaling
        if a.play:
            self.player = pj.AudioMediaPlayer()
            self.player.createPlayer(a.play, 0)  # 0: loop
        self.account = Account(self)
        self.account.create(acfg)
        info = self.ep.transportGetInfo(tid)
        emit(f"ready {a.transport} {info.localName}")

    def incoming(self, call, remote):
        if self.call is not None:
            emit(f"busy {remote}")
            prm = pj.CallOpParam()
            prm.statusCode = 486
            call.hangup(prm)
            self.stale.append(call)
            return
        self.call = call
        emit(f"incoming {remote}")
        if self.args.auto_answer is not None:
            self.answer(self.args.auto_answer)

    def answer(self, status):
        prm = pj.CallOpParam(True)
        prm.statusCode = status
        if status >= 300:
            self.call.hangup(prm)
        else:
            self.call.answer(prm)
        emit(f"answered {status}")

    def media_up(self, call, index):
        media = call.getAudioMedia(index)
        if self.player is not None:
            self.player.startTransmit(media)
        if self.args.record:
            if self.recorder is None:
                self.recorder = pj.AudioMediaRecorder()
                self.recorder.createRecorder(self.args.record)
            media.startTransmit(self.recorder)
        info = call.getStreamInfo(index)
        proto = PROTOS.get(info.proto, str(info.proto))
        emit(f"media active {info.codecName}/{info.codecClockRate} {proto}")
        # pjsua2 exposes no SRTP state; the call dump prints it per stream.
        dump = call.dump(True, "")
        suite = re.search(r"SRTP status: Active Crypto-suite: (\S+)", dump)
        emit(f"srtp active {suite.group(1)}" if suite else "srtp inactive")

    def ended(self, call):
        if call is self.call:
            self.call = None
            if self.recorder is not None:
                self.recorder = None  # closes the file, writes the final WAV header
                emit(f"recording closed {self.args.record}")
        self.stale.append(call)

    def command(self, line):
        words = line.split()
        if not words:
            return True
        name, rest = words[0], words[1:]
        try:
            if name == "quit":
                return False
            if name == "register":
                self.account.setRegistration(True)
            elif name == "unregister":
                self.account.setRegistration(False)
            elif self.call is None:
                raise ValueError("no call")
            elif name == "answer":
                self.answer(int(rest[0]) if rest else 200)
            elif name == "ring":
                prm = pj.CallOpParam()
                prm.statusCode = 180
                self.call.answer(prm)
            elif name == "hold":
                self.call.setHold(pj.CallOpParam(True))
            elif name == "unhold":
                prm = pj.CallOpParam(True)
                prm.opt.flag = pj.PJSUA_CALL_UNHOLD
                self.call.reinvite(prm)
            elif name == "hangup":
                prm = pj.CallOpParam()
                if rest:
                    prm.statusCode = int(rest[0])
                self.call.hangup(prm)
            elif name == "dtmf":
                self.call.dialDtmf(rest[0])
            elif name == "stats":
                stat = self.call.getStreamStat(0).rtcp
                emit(f"stats rx {stat.rxStat.pkt} tx {stat.txStat.pkt}")
            else:
                raise ValueError("unknown command")
            emit(f"ok {line}")
        except (pj.Error, ValueError, IndexError) as e:
            why = e.info() if isinstance(e, pj.Error) else str(e)
            emit(f"error {line}: {why}")
        return True

    def run(self):
        commands = queue.Queue()

        def read_stdin():
            for line in sys.stdin:
                commands.put(line.strip())
            commands.put(None)  # EOF: the test is gone

        threading.Thread(target=read_stdin, daemon=True).start()
        deadline = time.monotonic() + self.args.limit
        running = True
        while running and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
            self.stale.clear()
            while running:
                try:
                    line = commands.get_nowait()
                except queue.Empty:
                    break
                running = line is not None and self.command(line)
        self.stop()

    def stop(self):
        self.ep.hangupAllCalls()
        for _ in range(20):  # let the BYE go out before the endpoint goes
            self.ep.libHandleEvents(10)
        self.recorder = None
        self.player = None
        self.call = None
        self.stale.clear()
        if self.account is not None:
            self.account.shutdown()
            self.account = None
        self.ep.libDestroy()
        emit("quit")


class Account(pj.Account):
    def __init__(self, phone):
        pj.Account.__init__(self)
        self.phone = phone

    def onRegState(self, prm):
        if prm.code // 100 == 2:
            emit(f"{'registered' if prm.expiration > 0 else 'unregistered'} {prm.code}")
        else:
            emit(f"registration failed {prm.code} {prm.reason}")

    def onIncomingCall(self, prm):
        # One Call object per call: dropping a pjsua2 Call hangs its call up.
        call = Call(self.phone, prm.callId)
        self.phone.incoming(call, call.getInfo().remoteUri)


class Call(pj.Call):
    def __init__(self, phone, call_id):
        pj.Call.__init__(self, phone.account, call_id)
        self.phone = phone

    def onCallState(self, prm):
        ci = self.getInfo()
        emit(f"call state {STATES.get(ci.state, ci.state)} {ci.lastStatusCode} {ci.lastReason}")
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.phone.ended(self)

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.phone.media_up(self, mi.index)
            else:
                emit(f"media {MEDIA.get(mi.status, mi.status)}")

    def onDtmfDigit(self, prm):
        emit(f"dtmf {prm.digit}")


def main():
    args = parse_args()
    phone = Phone(args)
    try:
        phone.start()
    except pj.Error as e:
        emit(f"failed {e.info()}")
        raise SystemExit(1)
    phone.run()
    os._exit(0)  # past libDestroy; skip Python's teardown of the SWIG objects


if __name__ == "__main__":
    main()
