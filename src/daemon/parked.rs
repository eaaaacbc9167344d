//! Why MoneyKit's answer parks a link: one list of park reasons and their
//! recorded wording, shared by the answers to a POST ([`outcome`](super::outcome))
//! and to a read ([`read_outcome`](super::read_outcome)), so the two paths
//! cannot word (or classify) the same answer differently.

use crate::domain::LinkState;
use crate::moneykit::ApiError;

/// An answer that takes a link out of scheduling until something changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parked {
    /// 404: MoneyKit has no such link.
    NotFound,
    /// 410: the link was deleted.
    Deleted,
    /// 422: the user must reconnect the link (re-checked now and then).
    NeedsUserAction {
        /// MoneyKit's `link_error_code`, if it sent one.
        code: Option<String>,
    },
}

impl Parked {
    /// The park reason of a failed read, if it is one.
    pub(crate) fn of_read(error: &ApiError) -> Option<Parked> {
        match error {
            ApiError::NotFound => Some(Parked::NotFound),
            ApiError::Deleted => Some(Parked::Deleted),
            ApiError::BadState { link_error_code } => Some(Parked::NeedsUserAction {
                code: link_error_code.clone(),
            }),
            _ => None,
        }
    }

    /// The state the link is parked in.
    pub(crate) fn state(&self) -> LinkState {
        match self {
            Parked::NotFound => LinkState::NotFound,
            Parked::Deleted => LinkState::Deleted,
            Parked::NeedsUserAction { .. } => LinkState::NeedsUserAction,
        }
    }

    /// The HTTP status MoneyKit answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Parked::NotFound => 404,
            Parked::Deleted => 410,
            Parked::NeedsUserAction { .. } => 422,
        }
    }

    /// The reason recorded with the state (`parked_reason`, the history's
    /// detail), starting with the state's name.
    pub(crate) fn reason(&self) -> String {
        match self {
            Parked::NotFound => "not_found: MoneyKit has no such link".to_owned(),
            Parked::Deleted => "deleted: the link was deleted".to_owned(),
            Parked::NeedsUserAction { code } => {
                format!(
                    "needs_user_action: {}",
                    code.as_deref().unwrap_or("unknown")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_parks_only_on_404_410_and_422_and_words_the_state_first() {
        let parks = [
            (ApiError::NotFound, LinkState::NotFound, 404),
            (ApiError::Deleted, LinkState::Deleted, 410),
            (
                ApiError::BadState {
                    link_error_code: Some("auth_expired".into()),
                },
                LinkState::NeedsUserAction,
                422,
            ),
        ];
        for (error, state, status) in parks {
            let p = Parked::of_read(&error).expect("parks");
            assert_eq!((p.state(), p.status()), (state, status));
            assert!(p.reason().starts_with(state.as_str()), "{}", p.reason());
        }
        let no_code = Parked::NeedsUserAction { code: None };
        assert_eq!(no_code.reason(), "needs_user_action: unknown");
        for transient in [ApiError::Timeout, ApiError::ServerError { status: 503 }] {
            assert_eq!(Parked::of_read(&transient), None);
        }
    }
}
