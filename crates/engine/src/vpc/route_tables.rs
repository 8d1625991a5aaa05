//! Route tables: DescribeRouteTables (each VPC's main table, with its main association
//! and its `local` route).

use crate::query::{Filter, Filterable, Page, check_filters, matches};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

use super::{ROUTE_TABLE_KIND, RouteTableDoc, decode};

/// A route table as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTableView {
    /// `rtb-…`.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// Stored attributes.
    pub doc: RouteTableDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for RouteTableView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        let d = &self.doc;
        let main = || {
            if d.main {
                vec![d.main_association_id.clone()]
            } else {
                Vec::new()
            }
        };
        match name {
            "route-table-id" | "association.route-table-id" => one(&self.id),
            "vpc-id" => one(&d.vpc_id),
            "owner-id" => one(&self.owner_id),
            "association.main" => one(&d.main.to_string()),
            "association.route-table-association-id" => Some(main()),
            "association.subnet-id" => Some(Vec::new()),
            "route.destination-cidr-block" => {
                Some(d.routes.iter().map(|(c, _)| c.clone()).collect())
            }
            "route.gateway-id" => Some(d.routes.iter().map(|(_, g)| g.clone()).collect()),
            "route.state" => one("active"),
            "route.origin" => one("CreateRouteTable"),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

impl Cloud {
    /// DescribeRouteTables: the caller's route tables in its region.
    pub fn describe_route_tables(
        &self,
        caller: &Caller,
        table_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<RouteTableView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 100, !table_ids.is_empty())?;
        for id in table_ids {
            ids::check("rtb", "InvalidRouteTableID.Malformed", id)?;
        }
        self.ensure_default_vpc(caller)?;
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (row, tags) in self.owned_rows(caller, ROUTE_TABLE_KIND)? {
            if !table_ids.is_empty() && !table_ids.contains(&row.id) {
                continue;
            }
            seen.push(row.id.clone());
            let view = RouteTableView {
                doc: decode(&row)?,
                id: row.id,
                owner_id: row.account_id,
                tags,
            };
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        for id in table_ids {
            if !seen.contains(id) {
                return Err(Ec2Error::not_found(
                    "InvalidRouteTableID.NotFound",
                    "routeTable ID",
                    id,
                ));
            }
        }
        Ok(page.apply(out, |v| &v.id))
    }
}
