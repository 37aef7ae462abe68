from earmark.cli import main_then_exit

main_then_exit()
