-- One database per service on the shared development server.
CREATE DATABASE backorder_orders;
CREATE DATABASE backorder_inventory;
CREATE DATABASE backorder_allocator;
CREATE DATABASE backorder_notifier;
