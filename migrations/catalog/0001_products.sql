-- The catalog's products, and a deterministic seed that looks like a real
-- shop: 8 categories, 16 products each (128 in all), SKUs like COF-0001.
-- Runs as the `catalog` role with search_path = catalog, so names are
-- unqualified; sqlx wraps the file in a transaction.

CREATE TABLE products (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku         text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    description text        NOT NULL,
    category    text        NOT NULL,
    price_cents bigint      NOT NULL CHECK (price_cents >= 0),
    currency    char(3)     NOT NULL DEFAULT 'EUR',
    stock       integer     NOT NULL CHECK (stock >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Keyset pagination within a category: WHERE category = $1 AND id > $2 ORDER BY id.
CREATE INDEX products_category_id_idx ON products (category, id);

-- Seed: each base item is offered in its category's variants (bag size,
-- tin size, binding, colour); kitchen and stationery items come in one.
-- Prices are the base price scaled by the variant, rounded to end in .90.
-- Stock is a fixed function of the row number: mostly 20–500, and every
-- 16th product (starting with the 6th) nearly sold out (0–5 left).
WITH category (prefix, name, ord) AS (
    VALUES ('COF', 'coffee', 1), ('TEA', 'tea', 2), ('KIT', 'kitchen', 3),
           ('AUD', 'audio', 4), ('BOK', 'books', 5), ('OUT', 'outdoor', 6),
           ('STA', 'stationery', 7), ('HOM', 'home', 8)
),
variant (category, ord, label, detail, price_pct) AS (
    VALUES
    ('coffee', 1, '250 g', 'Whole bean, 250 g bag with a one-way valve.', 100),
    ('coffee', 2, '1 kg', 'Whole bean, 1 kg bag for cafés and heavy drinkers.', 340),
    ('tea', 1, '50 g tin', 'Loose leaf in a resealable 50 g tin.', 100),
    ('tea', 2, '250 g refill', 'Loose leaf, 250 g refill pouch.', 380),
    ('kitchen', 1, '', '', 100),
    ('audio', 1, 'Black', 'Colour: black.', 100),
    ('audio', 2, 'Sand', 'Colour: sand.', 105),
    ('books', 1, 'Paperback', 'Paperback with sewn binding.', 100),
    ('books', 2, 'Hardcover', 'Clothbound hardcover with a ribbon marker.', 220),
    ('outdoor', 1, 'Forest', 'Colour: forest green.', 100),
    ('outdoor', 2, 'Slate', 'Colour: slate grey.', 100),
    ('stationery', 1, '', '', 100),
    ('home', 1, 'Oat', 'Colour: oat.', 100),
    ('home', 2, 'Charcoal', 'Colour: charcoal.', 100)
),
base (category, ord, name, description, price_cents) AS (
    VALUES
    ('coffee', 1, 'Ethiopia Yirgacheffe', 'Washed heirloom varieties from Gedeo; jasmine, bergamot and lemon curd.', 1290),
    ('coffee', 2, 'Colombia Huila', 'Caturra and Castillo from smallholders near Pitalito; red apple, panela, cocoa.', 1150),
    ('coffee', 3, 'Kenya Nyeri AA', 'SL28 and SL34 grown on volcanic soil; blackcurrant, grapefruit, bright acidity.', 1490),
    ('coffee', 4, 'Brazil Cerrado', 'Natural process with low acidity; hazelnut, milk chocolate and caramel.', 950),
    ('coffee', 5, 'Guatemala Antigua', 'Bourbon grown between three volcanoes; cocoa, orange peel, brown sugar.', 1190),
    ('coffee', 6, 'Sumatra Mandheling', 'Wet-hulled; cedar, dark chocolate and a heavy, syrupy body.', 1090),
    ('coffee', 7, 'Dark Horse Espresso Blend', 'Our house espresso of Brazil and India, roasted for milk drinks.', 1050),
    ('coffee', 8, 'Swiss Water Decaf', 'Colombian beans decaffeinated without solvents; chocolate and stone fruit.', 1190),
    ('tea', 1, 'Darjeeling First Flush', 'Spring picking from the Castleton estate; muscatel, fresh and floral.', 1490),
    ('tea', 2, 'Assam Breakfast', 'Malty, full-bodied black tea that takes milk well.', 890),
    ('tea', 3, 'Sencha Uji', 'Steamed Japanese green tea; grassy, sweet, with a long umami finish.', 1390),
    ('tea', 4, 'Genmaicha', 'Green tea with toasted brown rice; nutty and comforting.', 990),
    ('tea', 5, 'Earl Grey Bergamot', 'Ceylon black tea scented with cold-pressed Calabrian bergamot.', 950),
    ('tea', 6, 'Tieguanyin Oolong', 'Rolled Anxi oolong; orchid, cream and a lingering sweetness.', 1690),
    ('tea', 7, 'Rooibos Vanilla', 'Caffeine-free South African rooibos with Madagascar vanilla.', 850),
    ('tea', 8, 'Silver Needle White', 'Downy Fujian buds; honeydew, hay and a delicate body.', 1890),
    ('kitchen', 1, 'Conical Burr Hand Grinder', 'Stainless steel burrs with 40 click settings, from espresso to French press.', 8900),
    ('kitchen', 2, 'Ceramic Pour-Over Dripper', 'Cone dripper with spiral ribs for an even, unhurried extraction.', 2490),
    ('kitchen', 3, 'Gooseneck Kettle 1 L', 'Stovetop kettle with a thin spout for precise pouring.', 4490),
    ('kitchen', 4, 'French Press 8-Cup', 'Borosilicate glass and a four-layer steel filter.', 3490),
    ('kitchen', 5, 'Moka Pot 6-Cup', 'Classic aluminium stovetop brewer for strong, dense coffee.', 3290),
    ('kitchen', 6, 'Digital Coffee Scale', 'Weighs to 0.1 g with a built-in timer; USB-C rechargeable.', 3990),
    ('kitchen', 7, 'Paper Filters 100-Pack', 'Unbleached cone filters sized for two- to four-cup drippers.', 590),
    ('kitchen', 8, 'Cast Iron Skillet 26 cm', 'Pre-seasoned and oven-safe; lasts a lifetime with care.', 4990),
    ('kitchen', 9, 'Chef''s Knife 20 cm', 'Forged high-carbon stainless blade with a full tang.', 8990),
    ('kitchen', 10, 'Walnut Cutting Board', 'End-grain walnut, gentle on knife edges; 40 × 28 cm.', 6990),
    ('kitchen', 11, 'Espresso Tamper 58 mm', 'Flat stainless base on a walnut handle.', 2990),
    ('kitchen', 12, 'Milk Frothing Jug 600 ml', 'Stainless pitcher with a sharp spout for latte art.', 1990),
    ('kitchen', 13, 'Cold Brew Bottle 1 L', 'Glass bottle with a fine mesh filter; brews overnight in the fridge.', 2490),
    ('kitchen', 14, 'Glass Teapot with Infuser', 'Heat-resistant glass, 800 ml, with a removable steel infuser.', 2990),
    ('kitchen', 15, 'Stoneware Mug Set of 4', 'Reactive-glaze mugs, 350 ml each; dishwasher safe.', 3990),
    ('kitchen', 16, 'Thermal Carafe 1.2 L', 'Double-walled steel; keeps coffee hot for six hours.', 4490),
    ('audio', 1, 'Over-Ear Wireless Headphones', 'Active noise cancelling and 30 hours of battery.', 24900),
    ('audio', 2, 'True Wireless Earbuds', 'Compact earbuds with a charging case and IPX4 rating.', 12900),
    ('audio', 3, 'Bookshelf Speakers (Pair)', 'Passive two-way speakers with a 13 cm woofer.', 29900),
    ('audio', 4, 'Portable Bluetooth Speaker', 'Rugged, waterproof and loud enough for a garden party.', 7900),
    ('audio', 5, 'Belt-Drive Turntable', 'Built-in phono preamp and USB output for digitising records.', 27900),
    ('audio', 6, 'Desktop DAC and Headphone Amp', '32-bit DAC with balanced output and a volume knob that feels right.', 14900),
    ('audio', 7, 'Studio Monitor Headphones', 'Closed-back, flat response for mixing and long sessions.', 9900),
    ('audio', 8, 'DAB+ Kitchen Radio', 'Digital radio with presets, a kitchen timer and a warm sound.', 8900),
    ('books', 1, 'Moby-Dick — Herman Melville', 'The whaling epic, with an introduction and notes.', 1290),
    ('books', 2, 'Pride and Prejudice — Jane Austen', 'Austen''s comedy of manners, complete and unabridged.', 990),
    ('books', 3, 'Middlemarch — George Eliot', 'A study of provincial life in the 1830s.', 1390),
    ('books', 4, 'The Count of Monte Cristo — Alexandre Dumas', 'Betrayal, imprisonment and a patient revenge.', 1490),
    ('books', 5, 'Crime and Punishment — Fyodor Dostoevsky', 'A student''s crime and its long reckoning in St Petersburg.', 1290),
    ('books', 6, 'Walden — Henry David Thoreau', 'Two years in a cabin by a pond, and what it taught.', 990),
    ('books', 7, 'Frankenstein — Mary Shelley', 'The 1818 text of the first great science fiction novel.', 890),
    ('books', 8, 'Don Quixote — Miguel de Cervantes', 'The knight of La Mancha and his squire, in a modern translation.', 1590),
    ('outdoor', 1, 'Insulated Bottle 750 ml', 'Double-walled steel; cold for 24 hours, hot for 12.', 2990),
    ('outdoor', 2, 'Ultralight Tent 2P', 'Freestanding two-person tent at 1.4 kg, with two vestibules.', 32900),
    ('outdoor', 3, 'Down Sleeping Bag -5 °C', '650-fill responsibly sourced down; packs to the size of a melon.', 24900),
    ('outdoor', 4, 'Trekking Poles (Pair)', 'Aluminium, flick-lock adjustable, cork grips.', 7900),
    ('outdoor', 5, 'Compact Camp Stove', 'Canister stove that boils a litre in three and a half minutes.', 4490),
    ('outdoor', 6, 'Headlamp 400 lm', 'Rechargeable, with a red-light mode and lockout for your pack.', 3990),
    ('outdoor', 7, 'Daypack 24 L', 'Recycled ripstop with a padded back panel and hip belt.', 8990),
    ('outdoor', 8, 'Merino Beanie', 'Fine merino knit; warm without the itch.', 2990),
    ('stationery', 1, 'Dotted Notebook A5', '192 numbered pages of 100 g/m² paper that takes fountain pen ink.', 1890),
    ('stationery', 2, 'Lined Notebook A5', '192 numbered pages, 6 mm ruling, lay-flat binding.', 1890),
    ('stationery', 3, 'Pocket Notebooks 3-Pack', 'Kraft covers, 48 pages each, graph ruled.', 1190),
    ('stationery', 4, 'Fountain Pen, Fine Nib', 'Steel nib, piston filler, demonstrator barrel.', 4490),
    ('stationery', 5, 'Fountain Pen, Medium Nib', 'Steel nib, piston filler, matte black barrel.', 4490),
    ('stationery', 6, 'Blue-Black Ink 50 ml', 'Water-based ink that dries quickly and shades nicely.', 1290),
    ('stationery', 7, 'Gel Pens 0.5 mm 5-Pack', 'Smooth, quick-drying black gel ink.', 790),
    ('stationery', 8, 'Mechanical Pencil 0.5 mm', 'Knurled brass grip with a retractable tip.', 2490),
    ('stationery', 9, 'Brass Ruler 15 cm', 'Solid brass, etched metric scale; ages to a warm patina.', 1590),
    ('stationery', 10, 'Washi Tape Set of 6', 'Low-tack paper tape in muted colours.', 990),
    ('stationery', 11, 'Undated Weekly Planner', 'A week on two pages, 60 weeks, linen cover.', 2290),
    ('stationery', 12, 'Kraft Envelopes C6 25-Pack', 'Recycled kraft, gummed flap.', 590),
    ('stationery', 13, 'Index Cards 200-Pack', 'Ruled 7.5 × 12.5 cm cards for notes and recipes.', 490),
    ('stationery', 14, 'Leather Pen Case', 'Vegetable-tanned leather, holds three pens.', 3490),
    ('stationery', 15, 'Pastel Highlighters 6-Pack', 'Chisel tips in soft colours that don''t bleed through.', 890),
    ('stationery', 16, 'Letterpress Cards 6-Pack', 'Blank cards printed on cotton paper, with envelopes.', 1690),
    ('home', 1, 'Linen Cushion Cover 50 × 50 cm', 'Stonewashed European linen with a hidden zip.', 2990),
    ('home', 2, 'Wool Throw 130 × 170 cm', 'Lambswool woven in a herringbone pattern.', 8990),
    ('home', 3, 'Cotton Bath Towel', '600 g/m² organic cotton terry, 70 × 140 cm.', 2490),
    ('home', 4, 'Waffle Bathrobe', 'Lightweight cotton waffle weave; one size.', 5990),
    ('home', 5, 'Stoneware Vase', 'Hand-thrown, 22 cm tall, glazed inside.', 3490),
    ('home', 6, 'Ceramic Planter 15 cm', 'With a drainage hole and a matching saucer.', 2490),
    ('home', 7, 'Table Lamp with Linen Shade', 'Ceramic base, E27 fitting, 1.8 m fabric cable.', 7990),
    ('home', 8, 'Soy Wax Candle 200 g', 'Cedar and fig, about 45 hours of burn time.', 2290)
),
item AS (
    SELECT
        c.prefix,
        c.name AS category,
        c.ord AS category_ord,
        row_number() OVER (PARTITION BY c.prefix ORDER BY b.ord, v.ord) AS n_in_category,
        row_number() OVER (ORDER BY c.ord, b.ord, v.ord) AS n,
        CASE WHEN v.label = '' THEN b.name ELSE b.name || ', ' || v.label END AS name,
        CASE WHEN v.detail = '' THEN b.description ELSE b.description || ' ' || v.detail END AS description,
        (round(b.price_cents * v.price_pct / 10000.0) * 100 - 10)::bigint AS price_cents
    FROM base b
    JOIN category c ON c.name = b.category
    JOIN variant v ON v.category = b.category
)
INSERT INTO products (sku, name, description, category, price_cents, stock)
SELECT
    prefix || '-' || lpad(n_in_category::text, 4, '0'),
    name,
    description,
    category,
    price_cents,
    CASE WHEN n % 16 = 6 THEN (n / 16) % 6
         ELSE 20 + (n * 137) % 481
    END::integer
FROM item
ORDER BY n;
