//! How a service describes itself to the harness: the [`Service`] trait,
//! and the macros that implement it and wrap [`super::TestApp`] for a
//! storefront service in a few lines.

use std::fmt::Debug;
use std::future::Future;

use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use super::{Server, TestEnv};
use crate::Vars;

/// A service the tests can boot: a marker type in the service's
/// `tests/common` implements it over the service's `Application`.
pub trait Service: Send + Sync + 'static {
    /// The service's `Application`.
    type App: Send + 'static;
    /// Why it could not start or stopped abnormally.
    type Error: Debug + Send + 'static;
    /// `SERVICE_NAME` is `<NAME>-test`.
    const NAME: &'static str;
    /// The servers its tests need.
    const SERVERS: &'static [Server];
    /// Its migrations (`sqlx::migrate!("../../migrations/<service>")` in a
    /// `static`), or `None` without a database.
    fn migrator() -> Option<&'static Migrator>;
    /// Its settings in a test on `env` (`DATABASE_URL`, `REDIS_URL`,
    /// `AMQP_URL` and `BIND_ADDR` are set already).
    fn settings(env: &TestEnv) -> Vec<(String, String)>;
    /// Builds the `Application` from `vars`.
    fn build(vars: Vars) -> impl Future<Output = Result<Self::App, Self::Error>> + Send;
    /// The port the app bound.
    fn port(app: &Self::App) -> u16;
    /// Runs the app until `stop` is cancelled, then drains.
    fn run(
        app: Self::App,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static;
}

/// `[(name, value)]` as owned pairs, for [`Service::settings`].
#[must_use]
pub fn pairs<const N: usize>(items: [(&str, &str); N]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Declares a marker type and its [`Service`] implementation for a service
/// crate whose `startup::Application` has `build(config::Config)`, `port()`
/// and `run_until(signal)`, as every storefront service has:
///
/// ```ignore
/// storefront_kit::test_service! {
///     /// The catalog, as the kit's harness boots it.
///     Catalog: storefront_catalog, "catalog", [Postgres, Redis],
///     migrations "../../migrations/catalog",
///     |env| [("CACHE_KEY_PREFIX", env.name.as_str())]
/// }
/// ```
///
/// Without `migrations "…"` the service gets no schema.
#[macro_export]
macro_rules! test_service {
    (
        $(#[$meta:meta])* $name:ident: $krate:ident, $service:literal, [$($server:ident),*],
        migrations $path:literal, |$env:ident| $settings:expr $(,)?
    ) => {
        $crate::test_service!(@impl $(#[$meta])* $name, $krate, $service, [$($server),*], {
            static MIGRATOR: $crate::testing::Migrator = ::sqlx::migrate!($path);
            Some(&MIGRATOR)
        }, |$env| $settings);
    };
    (
        $(#[$meta:meta])* $name:ident: $krate:ident, $service:literal, [$($server:ident),*],
        |$env:ident| $settings:expr $(,)?
    ) => {
        $crate::test_service!(@impl $(#[$meta])* $name, $krate, $service, [$($server),*], {
            None
        }, |$env| $settings);
    };
    (
        @impl $(#[$meta:meta])* $name:ident, $krate:ident, $service:literal, [$($server:ident),*],
        $migrator:block, |$env:ident| $settings:expr
    ) => {
        $(#[$meta])*
        pub struct $name;

        impl $crate::testing::Service for $name {
            type App = $krate::startup::Application;
            type Error = $krate::startup::AppError;
            const NAME: &'static str = $service;
            const SERVERS: &'static [$crate::testing::Server] =
                &[$($crate::testing::Server::$server),*];

            fn migrator() -> Option<&'static $crate::testing::Migrator> $migrator

            fn settings($env: &$crate::testing::TestEnv) -> Vec<(String, String)> {
                $crate::testing::pairs($settings)
            }

            async fn build(vars: $crate::Vars) -> Result<Self::App, Self::Error> {
                let config = $krate::config::Config::from_vars(&vars);
                Self::App::build(config.expect("the test settings parse")).await
            }

            fn port(app: &Self::App) -> u16 {
                app.port()
            }

            fn run(
                app: Self::App,
                stop: $crate::testing::CancellationToken,
            ) -> impl ::std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
                app.run_until(stop.cancelled_owned())
            }
        }
    };
}

/// Declares `pub struct $wrapper(pub TestApp<$service>)` dereferencing to
/// the kit's [`TestApp`], so a service's `tests/common` can add its own
/// request helpers to it.
#[macro_export]
macro_rules! test_app {
    ($(#[$meta:meta])* $wrapper:ident for $service:ty) => {
        $(#[$meta])*
        pub struct $wrapper(pub $crate::testing::TestApp<$service>);

        impl ::std::ops::Deref for $wrapper {
            type Target = $crate::testing::TestApp<$service>;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}
