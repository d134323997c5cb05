//! What a configuration's rules compile to, data only: each campaign's contact rules
//! (`contact`: whom the dialer may call, when and how often; `order`: in what order) and the routing policy
//! (`routing`), with the expression language routing rules are written in (`expr`). A
//! generation holds one compiled set; the dialer and the router read it and never change it.

pub mod contact;
pub mod expr;
pub mod order;
pub mod routing;
