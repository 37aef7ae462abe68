from earmark.cli import main_then_exit

if __name__ == "__main__":
    main_then_exit()
