//! Path segments a handler takes and records on its span.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use uuid::Uuid;

/// The UUID of a `/{id}`-style route, recorded as `field` on the handler's
/// current span; the rejection (a malformed id) is returned for the
/// service's error type to turn into its 400 problem.
///
/// `field` must be declared on the span (`#[tracing::instrument(fields(order_id))]`)
/// for the record to show.
pub fn recorded_uuid(
    id: Result<Path<Uuid>, PathRejection>,
    field: &'static str,
) -> Result<Uuid, PathRejection> {
    let Path(id) = id?;
    tracing::Span::current().record(field, tracing::field::display(id));
    Ok(id)
}
