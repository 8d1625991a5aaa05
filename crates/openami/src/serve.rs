//! `openami serve`: the HTTP server on the embedded default (local object store).
//!
//! For now it answers `GET /health`; the EC2 Query API and EBS direct APIs mount here.
//! It owns the data directory exclusively, collects garbage in the background and shuts
//! down cleanly on SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::cli::ServeArgs;
use crate::datadir::DataDir;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data = DataDir::open(&args.data.data_dir, true)?;
    let _owner = data.lock_exclusive()?;
    // We own the directory: any temp file in the object store is from a crashed writer.
    let removed = data
        .local_objects()
        .remove_stale_temp_files(Duration::ZERO)
        .context("cleaning temp files")?;
    if removed > 0 {
        tracing::info!(removed, "removed temp files left by a crash");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, Arc::new(data)))
}

async fn serve(args: ServeArgs, data: Arc<DataDir>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        listen = %local,
        data_dir = %data.root().display(),
        "openami serving"
    );
    if args.gc_interval > 0 {
        tokio::spawn(periodic_gc(
            Arc::clone(&data),
            Duration::from_secs(args.gc_interval),
        ));
    }
    let app = Router::new()
        .route("/health", get(health))
        .fallback(not_found);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("openami stopped");
    Ok(())
}

async fn health() -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        format!(
            "{{\"status\":\"ok\",\"version\":\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
    )
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}

async fn periodic_gc(data: Arc<DataDir>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await; // the first tick is immediate; skip it
    loop {
        ticker.tick().await;
        let store = Arc::clone(&data.store);
        match tokio::task::spawn_blocking(move || store.gc()).await {
            Ok(Ok(report)) => tracing::debug!(?report, "background gc"),
            Ok(Err(e)) => tracing::error!(error = %e, "background gc failed"),
            Err(e) => tracing::error!(error = %e, "background gc panicked"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}
