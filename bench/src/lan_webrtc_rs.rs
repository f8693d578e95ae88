//! The comparison side of `hearth-lan-bench --webrtc`'s bulk transfer: two peers of the
//! `webrtc` crate (webrtc-rs 0.21, the rewrite over its sans-IO `rtc` stack) in one process,
//! on loopback, one ordered reliable data channel, the same messages and the same bytes in
//! flight as Hearth's side. Built only with the bench's `webrtc-rs` feature: a second WebRTC
//! stack stays out of every other build (CI's included).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState,
};

/// What a peer's handler reports.
enum Note {
    Gathered,
    Failed,
    Channel(Arc<dyn DataChannel>),
}

struct Handler(mpsc::UnboundedSender<Note>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(Note::Gathered);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Failed {
            let _ = self.0.send(Note::Failed);
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.0.send(Note::Channel(channel));
    }
}

async fn peer(window: usize) -> anyhow::Result<(impl PeerConnection, mpsc::UnboundedReceiver<Note>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let runtime = webrtc::runtime::default_runtime().context("webrtc-rs has no runtime")?;
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_handler(Arc::new(Handler(tx)))
        .with_runtime(runtime)
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        // `send` waits while this many bytes are buffered: the window Hearth's side keeps.
        .with_data_channel_send_buffer_limit(window)
        .build()
        .await?;
    Ok((pc, rx))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Note>) -> anyhow::Result<Note> {
    match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Some(Note::Failed)) => bail!("webrtc-rs connection failed"),
        Ok(Some(n)) => Ok(n),
        Ok(None) => bail!("webrtc-rs peer went away"),
        Err(_) => bail!("webrtc-rs timed out"),
    }
}

async fn gathered(rx: &mut mpsc::UnboundedReceiver<Note>) -> anyhow::Result<()> {
    loop {
        if let Note::Gathered = next(rx).await? {
            return Ok(());
        }
    }
}

async fn transfer(total: usize, msg: usize, window: usize) -> anyhow::Result<f64> {
    let (a, mut a_rx) = peer(window).await?;
    let (b, mut b_rx) = peer(window).await?;
    let init = RTCDataChannelInit { ordered: true, ..Default::default() };
    let dc = a.create_data_channel("bulk", Some(init)).await?;
    let offer = a.create_offer(None).await?;
    a.set_local_description(offer).await?;
    gathered(&mut a_rx).await?;
    b.set_remote_description(a.local_description().await.context("no offer")?).await?;
    let answer = b.create_answer(None).await?;
    b.set_local_description(answer).await?;
    gathered(&mut b_rx).await?;
    a.set_remote_description(b.local_description().await.context("no answer")?).await?;

    loop {
        match tokio::time::timeout(Duration::from_secs(20), dc.poll()).await {
            Ok(Some(DataChannelEvent::OnOpen)) => break,
            Ok(Some(_)) => {}
            _ => bail!("webrtc-rs channel did not open"),
        }
    }
    let incoming = loop {
        if let Note::Channel(c) = next(&mut b_rx).await? {
            break c;
        }
    };
    let count = total / msg;
    let t0 = Instant::now();
    let sender = {
        let dc = dc.clone();
        tokio::spawn(async move {
            let m = BytesMut::from(&vec![0x5au8; msg][..]);
            for _ in 0..count {
                dc.send(m.clone()).await?;
            }
            anyhow::Ok(())
        })
    };
    // The sender's own events (buffered amount low/high) must be drained or they pile up.
    let drain = tokio::spawn(async move { while dc.poll().await.is_some() {} });
    let mut got = 0usize;
    let end = t0 + Duration::from_secs(60);
    while got < count * msg {
        match tokio::time::timeout_at(end.into(), incoming.poll()).await {
            Ok(Some(DataChannelEvent::OnMessage(m))) => got += m.data.len(),
            Ok(Some(_)) => {}
            Ok(None) => bail!("webrtc-rs channel closed after {got} bytes"),
            Err(_) => bail!("webrtc-rs transfer timed out after {got} bytes"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    sender.await??;
    drain.abort();
    let _ = a.close().await;
    let _ = b.close().await;
    Ok((count * msg) as f64 * 8.0 / secs / 1e6)
}

/// Megabits a second of `total` bytes in `msg`-byte messages from one webrtc-rs peer to
/// another, `window` bytes in flight at most (its own tokio runtime, all cores).
pub(crate) fn throughput(total: usize, msg: usize, window: usize) -> anyhow::Result<f64> {
    tokio::runtime::Runtime::new()?.block_on(transfer(total, msg, window))
}
