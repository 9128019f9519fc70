//! The shop: `store create`, `product add|update|show`, `products`, `sales`,
//! `cart add|remove` and `cart`, `checkout`, `orders`.
//!
//! Money is given and printed as `12.34` and travels as integer cents. Every input is
//! validated here with the shop's own rules before it is sent, so errors name the field.

use clap::{Args, Subcommand};
use shoal_shop::{Action, Cursor, ProductFilter, Query, parse_money, validate};

use super::client::{auth, authed, connect, print_response};
use super::{CliResult, GlobalArgs};

/// `shoal store ...`
#[derive(Debug, Clone, Subcommand)]
pub enum StoreCommand {
    /// Creates a store (owners).
    Create {
        /// The store's name.
        #[arg(long)]
        name: String,
    },
}

/// `shoal product ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ProductCommand {
    /// Adds a product to one of your stores (owners).
    Add(ProductAddArgs),
    /// Changes a product's price and/or stock (owners).
    Update(ProductUpdateArgs),
    /// Shows one product.
    Show {
        /// The product id.
        id: u64,
    },
}

/// Arguments of `product add`.
#[derive(Debug, Clone, Args)]
pub struct ProductAddArgs {
    /// The store id.
    #[arg(long)]
    pub store: u64,
    /// The product's name.
    #[arg(long)]
    pub name: String,
    /// Its category, e.g. footwear.
    #[arg(long)]
    pub category: String,
    /// Its brand.
    #[arg(long)]
    pub brand: String,
    /// Its size, e.g. 42 or M.
    #[arg(long, allow_hyphen_values = true)]
    pub size: String,
    /// Its price, e.g. 12.34.
    #[arg(long, allow_hyphen_values = true)]
    pub price: String,
    /// Units in stock.
    #[arg(long, allow_negative_numbers = true)]
    pub stock: i64,
}

/// Arguments of `product update`.
#[derive(Debug, Clone, Args)]
pub struct ProductUpdateArgs {
    /// The product id.
    pub id: u64,
    /// The new price, e.g. 12.34.
    #[arg(long, allow_hyphen_values = true)]
    pub price: Option<String>,
    /// The new stock.
    #[arg(long, allow_negative_numbers = true)]
    pub stock: Option<i64>,
}

/// Arguments of `shoal products`.
#[derive(Debug, Clone, Args)]
pub struct ProductsArgs {
    /// Only this category.
    #[arg(long)]
    pub category: Option<String>,
    /// Only this brand.
    #[arg(long)]
    pub brand: Option<String>,
    /// Only this size.
    #[arg(long, allow_hyphen_values = true)]
    pub size: Option<String>,
    /// Lowest price, e.g. 10.00 (inclusive).
    #[arg(long, allow_hyphen_values = true)]
    pub min_price: Option<String>,
    /// Highest price, e.g. 99.99 (inclusive).
    #[arg(long, allow_hyphen_values = true)]
    pub max_price: Option<String>,
    /// Most products in the page.
    #[arg(long, default_value_t = validate::DEFAULT_PAGE)]
    pub limit: u32,
    /// Continue after this cursor (the `next` of the previous page).
    #[arg(long, allow_hyphen_values = true)]
    pub after: Option<String>,
}

/// Arguments of `shoal sales`.
#[derive(Debug, Clone, Args)]
pub struct SalesArgs {
    /// Only this store (default: all of yours).
    #[arg(long)]
    pub store: Option<u64>,
}

/// `shoal cart [add|remove]`
#[derive(Debug, Clone, Subcommand)]
pub enum CartCommand {
    /// Adds units of a product (adding again accumulates).
    Add {
        /// The product id.
        product: u64,
        /// Units to add.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        qty: i64,
    },
    /// Removes units of a product (default: the whole line).
    Remove {
        /// The product id.
        product: u64,
        /// Units to remove.
        #[arg(long, allow_negative_numbers = true)]
        qty: Option<i64>,
    },
}

/// Arguments of `shoal orders`.
#[derive(Debug, Clone, Args)]
pub struct OrdersArgs {
    /// Most orders in the page.
    #[arg(long, default_value_t = validate::DEFAULT_PAGE)]
    pub limit: u32,
    /// Continue after this order id (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<u64>,
}

fn money(field: &str, text: &str) -> Result<i64, shoal_shop::ShopError> {
    parse_money(text).map_err(|e| e.for_field(field))
}

fn action(global: &GlobalArgs, action: Action) -> CliResult {
    action.validate()?;
    let request = authed(global, action)?;
    let response = connect(global)?.shop(request)?;
    print_response(global, &response)
}

/// Runs `shoal store ...`.
pub fn store(global: &GlobalArgs, command: &StoreCommand) -> CliResult {
    let StoreCommand::Create { name } = command;
    action(global, Action::CreateStore { name: name.clone() })
}

/// Runs `shoal product ...`.
pub fn product(global: &GlobalArgs, command: &ProductCommand) -> CliResult {
    match command {
        ProductCommand::Add(args) => action(
            global,
            Action::AddProduct {
                store_id: args.store,
                name: args.name.clone(),
                category: args.category.clone(),
                brand: args.brand.clone(),
                size: args.size.clone(),
                price_cents: money("price", &args.price)?,
                stock: args.stock,
            },
        ),
        ProductCommand::Update(args) => action(
            global,
            Action::UpdateProduct {
                product_id: args.id,
                price_cents: args
                    .price
                    .as_deref()
                    .map(|p| money("price", p))
                    .transpose()?,
                stock: args.stock,
            },
        ),
        ProductCommand::Show { id } => {
            let response = connect(global)?.read(Query::Product { product_id: *id })?;
            print_response(global, &response)
        }
    }
}

/// Runs `shoal products`.
pub fn products(global: &GlobalArgs, args: &ProductsArgs) -> CliResult {
    let filter = ProductFilter {
        category: args.category.clone(),
        brand: args.brand.clone(),
        size: args.size.clone(),
        min_price_cents: args
            .min_price
            .as_deref()
            .map(|p| money("min-price", p))
            .transpose()?,
        max_price_cents: args
            .max_price
            .as_deref()
            .map(|p| money("max-price", p))
            .transpose()?,
        limit: args.limit,
        after: args
            .after
            .as_deref()
            .map(str::parse::<Cursor>)
            .transpose()?,
    };
    filter.validate()?;
    let response = connect(global)?.read(Query::Products(filter))?;
    print_response(global, &response)
}

/// Runs `shoal sales`.
pub fn sales(global: &GlobalArgs, args: &SalesArgs) -> CliResult {
    let query = Query::Sales {
        auth: auth(global)?,
        store_id: args.store,
    };
    let response = connect(global)?.read(query)?;
    print_response(global, &response)
}

/// Runs `shoal cart [add|remove]`.
pub fn cart(global: &GlobalArgs, command: Option<&CartCommand>) -> CliResult {
    match command {
        Some(CartCommand::Add { product, qty }) => action(
            global,
            Action::CartAdd {
                product_id: *product,
                qty: *qty,
            },
        ),
        Some(CartCommand::Remove { product, qty }) => action(
            global,
            Action::CartRemove {
                product_id: *product,
                qty: *qty,
            },
        ),
        None => {
            let query = Query::Cart {
                auth: auth(global)?,
            };
            let response = connect(global)?.read(query)?;
            print_response(global, &response)
        }
    }
}

/// Runs `shoal checkout`.
pub fn checkout(global: &GlobalArgs) -> CliResult {
    action(global, Action::Checkout)
}

/// Runs `shoal orders`.
pub fn orders(global: &GlobalArgs, args: &OrdersArgs) -> CliResult {
    validate::limit(args.limit)?;
    let query = Query::Orders {
        auth: auth(global)?,
        after: args.after,
        limit: args.limit,
    };
    let response = connect(global)?.read(query)?;
    print_response(global, &response)
}
