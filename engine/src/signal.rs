//! Shutdown signals (Ctrl-C, SIGTERM) delivered to a callback on a helper thread.

use tokio::signal::unix::{signal, SignalKind};

/// Calls `on_signal(n)` on a helper thread each time the process gets SIGINT or SIGTERM,
/// `n` counting from 1, so a first signal can stop gracefully and a second one quit.
/// The handlers are installed when this returns.
pub fn on_shutdown_signal(mut on_signal: impl FnMut(u32) + Send + 'static) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("topo-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut n = 0;
                loop {
                    tokio::select! {
                        s = int.recv() => if s.is_none() { break },
                        s = term.recv() => if s.is_none() { break },
                    }
                    n += 1;
                    on_signal(n);
                }
            })
        })?;
    Ok(())
}
